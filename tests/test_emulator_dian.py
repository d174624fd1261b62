"""Emulator DIAN behaviour: DV rejection with a hidden pending bill, time-outs, duplicate policies."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorConfig, EmulatorServer
from tests.conftest import login, minimal_bill

PENDING = "Se encontró una factura pendiente por enviar a la DIAN"


def bill(reference: str, **customer: Any) -> dict[str, Any]:
    """The contract's minimal v1 bill; customer fields can be overridden."""
    doc = minimal_bill(reference)
    doc["customer"].update(customer)
    return doc


def nit_bill(reference: str, nit: str, dv: str | None) -> dict[str, Any]:
    """A bill for a company customer identified by NIT (with or without DV)."""
    customer: dict[str, Any] = {
        "identification_document_id": 6,
        "identification": nit,
        "company": "Empresa de prueba S.A.S.",
        "legal_organization_id": 1,
        "tribute_id": 18,
        "email": "compras@example.com",
    }
    if dv is not None:
        customer["dv"] = dv
    payload = bill(reference)
    payload["customer"] = customer
    return payload


class TestCheckDigit:
    @pytest.mark.parametrize(("nit", "dv"), [("900825759", "7"), ("901724254", "1"), ("123456789", "6")])
    def test_correct_dv_validates(self, api: httpx.Client, nit: str, dv: str) -> None:
        """Known NITs with their correct DIAN check digit validate."""
        r = api.post("/v1/bills/validate", json=nit_bill(f"DV-{nit}", nit, dv))
        assert r.status_code == 201
        assert r.json()["data"]["customer"]["dv"] == dv

    def test_wrong_dv_hidden_pending_conflict_then_delete(
        self, api: httpx.Client, emu: EmulatorServer
    ) -> None:
        """Wrong DV -> 422 FAK24 and a hidden pending bill -> 409 for every create -> delete -> OK."""
        r = api.post("/v1/bills/validate", json=nit_bill("FAK-1", "123456789", "3"))
        assert r.status_code == 422
        assert r.json() == {
            "status": "Validation error",
            "message": "El documento contiene errores de validación",
            "data": {
                "message": "El documento contiene errores de validación",
                "errors": {"FAK24": "Regla: FAK24, Rechazo: No está informado el DV del NIT"},
            },
        }
        pending = api.get("/v1/bills", params={"filter[status]": "0"}).json()["data"]["data"]
        assert [row["reference_code"] for row in pending] == ["FAK-1"]
        assert any("Rechazo" in e for e in pending[0]["errors"])
        assert [b["reference_code"] for b in emu.snapshot()["pending"]] == ["FAK-1"]

        other = api.post("/v1/bills/validate", json=bill("OK-1"))
        assert other.status_code == 409
        body = other.json()
        assert body["status"] == "Conflict" and body["message"] == PENDING
        assert body["errors"][0]["code"] == 409 and body["errors"][0]["message"] == PENDING
        assert api.post("/v1/bills/validate", json=nit_bill("FAK-1", "123456789", "6")).status_code == 409

        deleted = api.delete("/v1/bills/destroy/reference/FAK-1")
        assert deleted.status_code == 200
        assert deleted.json() == {
            "status": "OK",
            "message": "Documento con código de referencia FAK-1 eliminado con éxito",
        }
        assert api.post("/v1/bills/validate", json=bill("OK-1")).status_code == 201
        fixed = api.post("/v1/bills/validate", json=nit_bill("FAK-1", "123456789", "6"))
        assert fixed.status_code == 201
        assert api.delete("/v1/bills/destroy/reference/FAK-1").status_code == 409

    def test_reject_references_fault(self, api: httpx.Client) -> None:
        """A reference listed in ``reject_references`` is rejected with the given rule and kept pending."""
        api.post("/__emulator__/faults", json={"reject_references": {"REJ-1": "FAJ43b"}})
        r = api.post("/v1/bills/validate", json=bill("REJ-1"))
        assert r.status_code == 422
        rule = r.json()["data"]["errors"]["FAJ43b"]
        assert rule.startswith("Regla: FAJ43b, Rechazo:")
        assert api.post("/v1/bills/validate", json=bill("REJ-2")).status_code == 409


class TestDianTimeout:
    def test_timeout_then_resend_validates_same_number(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """A DIAN time-out leaves status 0 without "Rechazo"; resending the reference validates it."""
        emu.set_faults({"dian_timeout": 1})
        r = api.post("/v1/bills/validate", json=bill("TO-1"))
        assert r.status_code == 201
        first = r.json()["data"]["bill"]
        assert first["status"] == 0
        assert not any("Rechazo" in e for e in first["errors"])
        assert api.post("/v1/bills/validate", json=bill("TO-2")).status_code == 409
        again = api.post("/v1/bills/validate", json=bill("TO-1"))
        assert again.status_code == 201
        second = again.json()["data"]["bill"]
        assert (second["status"], second["number"], second["cufe"]) == (1, first["number"], first["cufe"])
        state = emu.snapshot()
        assert [b["reference_code"] for b in state["bills"]] == ["TO-1"]
        assert state["numbering_ranges"]["8"] == 990000002
        assert api.post("/v1/bills/validate", json=bill("TO-2")).status_code == 201

    def test_pending_can_be_deleted(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """A DIAN-pending bill may be deleted by reference, which unblocks the account."""
        emu.set_faults({"dian_timeout_references": ["TO-DEL"]})
        assert api.post("/v1/bills/validate", json=bill("TO-DEL")).json()["data"]["bill"]["status"] == 0
        assert api.delete("/v1/bills/destroy/reference/TO-DEL").status_code == 200
        assert api.post("/v1/bills/validate", json=bill("AFTER")).status_code == 201
        assert emu.snapshot()["deleted"][0]["reference_code"] == "TO-DEL"


class TestDuplicatePolicy:
    def test_return_existing(self, api: httpx.Client, emu: EmulatorServer) -> None:
        """return-existing: re-submitting a validated reference answers 200 with the same bill."""
        first = api.post("/v1/bills/validate", json=bill("DUP-1")).json()["data"]["bill"]
        again = api.post("/v1/bills/validate", json=bill("DUP-1"))
        assert again.status_code == 200
        assert again.json()["status"] == "OK"
        assert again.json()["data"]["bill"]["number"] == first["number"]
        assert len(emu.snapshot()["bills"]) == 1

    def test_conflict(self) -> None:
        """conflict: re-submitting a validated reference answers 409 and creates nothing."""
        with (
            EmulatorServer(EmulatorConfig(port=0, duplicate_policy="conflict")) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            login(http, server)
            assert http.post("/v1/bills/validate", json=bill("DUP-2")).status_code == 201
            again = http.post("/v1/bills/validate", json=bill("DUP-2"))
            assert again.status_code == 409
            assert "DUP-2" in again.json()["message"]
            assert "pendiente" not in again.json()["errors"][0]["detail"]  # nothing is pending here
            assert len(server.snapshot()["bills"]) == 1

    def test_create_duplicate(self) -> None:
        """create-duplicate: re-submitting a validated reference makes a second bill with a new number."""
        with (
            EmulatorServer(EmulatorConfig(port=0, duplicate_policy="create-duplicate")) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            login(http, server)
            one = http.post("/v1/bills/validate", json=bill("DUP-3")).json()["data"]["bill"]["number"]
            two = http.post("/v1/bills/validate", json=bill("DUP-3")).json()["data"]["bill"]["number"]
            assert one != two
            rows = http.get("/v1/bills", params={"filter[reference_code]": "DUP-3"}).json()["data"]["data"]
            assert len(rows) == 2


def test_concurrent_creates_never_share_a_number(emu: EmulatorServer) -> None:
    """Forty creates from eight threads get forty distinct consecutive numbers."""
    numbers: list[str] = []
    lock = threading.Lock()

    def worker(start: int) -> None:
        with httpx.Client(base_url=emu.url, timeout=10) as http:
            login(http, emu)
            for i in range(start, start + 5):
                r = http.post("/v1/bills/validate", json=bill(f"CONC-{i}"))
                assert r.status_code == 201
                with lock:
                    numbers.append(r.json()["data"]["bill"]["number"])

    threads = [threading.Thread(target=worker, args=(n * 5,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(numbers) == 40
    assert sorted(numbers) == [f"SETP{990000001 + i}" for i in range(40)]
