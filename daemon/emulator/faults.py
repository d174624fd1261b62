"""Fault injection, switchable at run time (``POST /__emulator__/faults`` or ``EmulatorServer.set_faults``).

A body is merged into the active faults: keys given replace their value, keys left out keep theirs,
``null`` restores a key's default, ``{"clear": true}`` first restores every default. Counters
("next N") count down as they fire. Unknown keys are refused with 400. A "create" is a
``POST /v1/bills/validate`` that passed field validation. ``latency_ms`` and ``fail_rate`` start at
the values of :class:`~daemon.emulator.config.EmulatorConfig` (a reset returns to them).

Keys (all optional):

==============================  ==========================================================================
``latency_ms``                  int: delay added to every API request (``/oauth/token`` and ``/v1/...``)
``latency_jitter_ms``           int: plus a uniform random 0..jitter
``fail_rate``                   float 0..1: probability that an API request (``/oauth/token`` included)
                                answers a ``fail_statuses`` code
``fail_statuses``               list of ints, default ``[500, 502, 503]``
``fail_next``                   int: the next N ``/v1`` requests fail (with ``fail_statuses``, in turn)
``fail_references``             list of reference codes (their next create answers 500) or
                                ``{ref: status}``; nothing is stored
``burst_429``                   int: the next N ``/v1`` requests answer 429 with ``Retry-After``
``retry_after_s``               int: the ``Retry-After`` of ``burst_429`` answers (default 1)
``reset_before_store``          int: the next N creates are dropped (TCP RST, no answer) before storing
``reset_before_store_rate``     float 0..1: probability of the same, per create
``reset_after_store``           int: the next N creates are stored, then the connection is reset
                                (the bill exists but the client never sees the answer)
``reset_after_store_rate``      float 0..1: probability of the same, per create
``reset_before_references``     list of reference codes: their next create is dropped before storing
``reset_after_references``      list of reference codes: their next create is reset after storing
``fail_after_store``            int: the next N creates are stored, then answered with a
                                ``fail_statuses`` code (a gateway error after the backend stored the bill)
``fail_after_store_rate``       float 0..1: probability of the same, per create
``expire_tokens``               true: invalidate every access token issued so far (an action, not kept)
``reject_refresh``              bool or int: refresh grants answer 400 invalid_grant (always / next N)
``dian_timeout``                int: the next N creates (new or resent) stay DIAN-pending (status 0,
                                no "Rechazo"); resending the reference later validates it
``dian_timeout_references``     list of reference codes (each times out once) or ``{ref: times}``
``reject_references``           list of reference codes DIAN rejects (rule ``FAU04``) or ``{ref: rule}``;
                                a rule is a code (``"FAK24"``) or a full ``"Regla: X, Rechazo: ..."``
==============================  ==========================================================================
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any

__all__ = ["FAULT_KEYS", "FaultError", "Faults", "rejection_rule"]

_DEFAULT_REJECTION = "FAU04"
_RULE_TEXTS = {
    "FAK24": "No está informado el DV del NIT",
    "FAU04": "Base imponible y valor del impuesto no coinciden con el total informado",
    "FAD09e": "Fecha de emisión anterior a la fecha de inicio de la autorización de numeración",
    "FAJ43b": "Nombre informado No corresponde al registrado en el RUT con respecto al Nit suminstrado",
}


class FaultError(ValueError):
    """Raised when a faults body has an unknown key or a value of the wrong type."""


def rejection_rule(rule: str) -> tuple[str, str]:
    """Turn a rule code or full text into ``(code, "Regla: CODE, Rechazo: text")``."""
    rule = rule.strip() or _DEFAULT_REJECTION
    if rule.lower().startswith("regla:"):
        code = rule.split(":", 1)[1].split(",", 1)[0].strip()
        return code, rule
    return rule, f"Regla: {rule}, Rechazo: {_RULE_TEXTS.get(rule, 'Documento rechazado por la DIAN')}"


@dataclass(slots=True)
class Faults:
    """The active faults (see the module docstring for the meaning of each key)."""

    latency_ms: int = 0
    latency_jitter_ms: int = 0
    fail_rate: float = 0.0
    fail_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    fail_next: int = 0
    burst_429: int = 0
    retry_after_s: int = 1
    reset_before_store: int = 0
    reset_before_store_rate: float = 0.0
    reset_after_store: int = 0
    reset_after_store_rate: float = 0.0
    fail_after_store: int = 0
    fail_after_store_rate: float = 0.0
    fail_references: dict[str, int] = field(default_factory=dict)
    reset_before_references: list[str] = field(default_factory=list)
    reset_after_references: list[str] = field(default_factory=list)
    reject_refresh: bool | int = False
    dian_timeout: int = 0
    dian_timeout_references: dict[str, int] = field(default_factory=dict)
    reject_references: dict[str, str] = field(default_factory=dict)
    _fail_turn: int = field(default=0, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON view of the active faults."""
        data = asdict(self)
        data.pop("_fail_turn", None)
        return data

    def merge(self, body: Mapping[str, Any], *, defaults: Faults) -> bool:
        """Apply a faults body; return True when it asked to expire every token now.

        Raises:
            FaultError: unknown key or wrong type (nothing is applied then).
        """
        staged = copy.deepcopy(self)
        if body.get("clear"):
            staged = copy.deepcopy(defaults)
        expire = False
        for key, value in body.items():
            if key == "clear":
                continue
            if key == "expire_tokens":
                expire = bool(value)
                continue
            if key not in FAULT_KEYS:
                known = ", ".join(sorted([*FAULT_KEYS, "clear", "expire_tokens"]))
                raise FaultError(f"unknown fault {key!r}; known: {known}")
            if value is None:
                setattr(staged, key, copy.deepcopy(getattr(defaults, key)))
                continue
            setattr(staged, key, _coerce(key, value))
        for f in fields(self):
            setattr(self, f.name, getattr(staged, f.name))
        return expire

    # --- decisions (called under the state lock) ------------------------------------------------------

    def latency_s(self, rng: random.Random) -> float:
        """Seconds to sleep before answering an API request."""
        jitter = rng.uniform(0, self.latency_jitter_ms) if self.latency_jitter_ms > 0 else 0.0
        return max(0.0, (self.latency_ms + jitter) / 1000)

    def take_failure(self, rng: random.Random, *, business: bool = True) -> int | None:
        """An HTTP status to fail this request with, or None.

        ``fail_next`` only counts ``/v1`` (business) requests; ``fail_rate`` applies to every API request.
        """
        statuses = self.fail_statuses or [500]
        if business and self.fail_next > 0:
            self.fail_next -= 1
        elif not (self.fail_rate > 0 and rng.random() < self.fail_rate):
            return None
        status = statuses[self._fail_turn % len(statuses)]
        self._fail_turn += 1
        return status

    def take_burst(self) -> bool:
        """True when this request belongs to a 429 burst."""
        if self.burst_429 > 0:
            self.burst_429 -= 1
            return True
        return False

    def take_reset(self, when: str, reference: str | None, rng: random.Random) -> bool:
        """True when this create must be dropped ``before`` or ``after`` storing."""
        refs = self.reset_before_references if when == "before" else self.reset_after_references
        if reference is not None and reference in refs:
            refs.remove(reference)
            return True
        count_key = f"reset_{when}_store"
        if getattr(self, count_key) > 0:
            setattr(self, count_key, getattr(self, count_key) - 1)
            return True
        rate: float = getattr(self, f"reset_{when}_store_rate")
        return rate > 0 and rng.random() < rate

    def take_failure_after_store(self, rng: random.Random) -> int | None:
        """The status to answer a create that was stored anyway, or None."""
        if self.fail_after_store > 0:
            self.fail_after_store -= 1
        elif not (self.fail_after_store_rate > 0 and rng.random() < self.fail_after_store_rate):
            return None
        statuses = self.fail_statuses or [500]
        status = statuses[self._fail_turn % len(statuses)]
        self._fail_turn += 1
        return status

    def take_reference_failure(self, reference: str) -> int | None:
        """The status a create of this reference must fail with (once), or None."""
        return self.fail_references.pop(reference, None)

    def take_refresh_rejection(self) -> bool:
        """True when this refresh grant must fail."""
        if self.reject_refresh is True:
            return True
        if (
            isinstance(self.reject_refresh, int)
            and not isinstance(self.reject_refresh, bool)
            and self.reject_refresh > 0
        ):
            self.reject_refresh -= 1
            return True
        return False

    def take_dian_timeout(self, reference: str) -> bool:
        """True when DIAN must not answer for this create (the bill stays pending)."""
        left = self.dian_timeout_references.get(reference, 0)
        if left > 0:
            if left == 1:
                del self.dian_timeout_references[reference]
            else:
                self.dian_timeout_references[reference] = left - 1
            return True
        if self.dian_timeout > 0:
            self.dian_timeout -= 1
            return True
        return False

    def rejection_for(self, reference: str) -> tuple[str, str] | None:
        """The DIAN rule that rejects this reference, if any."""
        rule = self.reject_references.get(reference)
        return None if rule is None else rejection_rule(rule)


_NUMBER = (int, float, Decimal)  # the control endpoint parses JSON numbers as Decimal


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or value < 0:
        raise FaultError(f"{key} must be a non-negative number, got {value!r}")
    return int(value)


def _rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not 0 <= value <= 1:
        raise FaultError(f"{key} must be a probability between 0 and 1, got {value!r}")
    return float(value)


def _refs(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FaultError(f"{key} must be a list of reference codes")
    return list(value)


def _coerce(key: str, value: Any) -> Any:
    if key in ("fail_rate", "reset_before_store_rate", "reset_after_store_rate", "fail_after_store_rate"):
        return _rate(key, value)
    if key == "fail_statuses":
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599 for v in value)
        ):
            raise FaultError("fail_statuses must be a non-empty list of HTTP error statuses")
        return list(value)
    if key in ("reset_before_references", "reset_after_references"):
        return _refs(key, value)
    if key == "reject_refresh":
        return value if isinstance(value, bool) else _int(key, value)
    if key == "dian_timeout_references":
        if isinstance(value, Mapping):
            return {str(k): _int(key, v) for k, v in value.items()}
        return dict.fromkeys(_refs(key, value), 1)
    if key == "fail_references":
        if isinstance(value, Mapping):
            statuses = {str(k): _int(key, v) for k, v in value.items()}
            if not all(400 <= s <= 599 for s in statuses.values()):
                raise FaultError("fail_references statuses must be HTTP error statuses")
            return statuses
        return dict.fromkeys(_refs(key, value), 500)
    if key == "reject_references":
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        return dict.fromkeys(_refs(key, value), _DEFAULT_REJECTION)
    return _int(key, value)


FAULT_KEYS = frozenset(f.name for f in fields(Faults) if not f.name.startswith("_"))
