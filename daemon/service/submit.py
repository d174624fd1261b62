"""Submission: every invoice to Factus exactly once, with reconciliation before any resend.

One worker per invoice, at most ``concurrency`` at a time, under the client's shared rate limiter.
The rules, in the order they apply to one invoice:

1. An invoice that may already exist at Factus (left ``submitting`` by a crash, or whose last create
   got no readable answer, or DIAN-pending) is first looked up by reference code. Found validated:
   recorded, never sent again. Found pending with a "Rechazo": that payload was rejected (recorded,
   hidden bill deleted) or, for a corrected payload, the stale bill is deleted first. Found pending
   otherwise: the same payload is resent (Factus treats it as a retry). Not found: sent, but only
   once ``in_doubt_grace_s`` has passed since a create that may still be running at the server.
2. ``submitting`` is committed before the POST; the answer is committed before anything else.
3. 409 (a pending bill blocks the account): our pending bills are resolved (resend if DIAN-pending,
   delete if rejected), bills that are not ours are never touched, and creates are serialised for a
   while. 422 DIAN rejection: ``rejected`` and the hidden bill deleted. Field 422: ``invalid``.
4. Transient faults back off; after ``max_attempts`` the invoice stays ``pending`` for the scheduler.
   An authentication failure pauses all submissions until the token job signs in again.
5. After validation the PDF and XML are downloaded (lower priority) into the file's batch folder.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from daemon.errors import AuthError, ConfigError, FactusError, NotFoundError, TransientError
from daemon.log import redact
from daemon.money import to_decimal
from daemon.service import crash
from daemon.service.ledger import InvoiceRow, SqliteLedger
from daemon.service.outbox import Outbox

__all__ = ["BillClient", "SubmitPolicy", "Submitter", "has_rejection"]

_log = structlog.get_logger("daemon.service.submit")

# Outcomes after which the bill certainly does not exist at Factus (nothing to reconcile).
_NOT_CREATED = frozenset({"rate_limited", "conflict", "auth", "not_sent", "error"})
_SERIAL_FOR_S = 30.0
_STRIPES = 1024  # per-invoice mutual exclusion without one lock object per reference code
_FREE_WAITS = 100
_DEFER_S = 1.0
"""A wait longer than this gives the worker back: the invoice is re-queued when it is due."""


class _Outcome(Protocol):
    kind: str
    number: str | None
    bill_id: int | None
    cufe: str | None
    qr: str | None
    total: Decimal | None
    rules: dict[str, str]
    field_errors: dict[str, list[str]]
    notifications: list[str]
    message: str


class _File(Protocol):
    content: bytes


class BillClient(Protocol):
    """The part of :class:`daemon.factus.client.FactusClient` the submitter uses."""

    def create_bill(self, payload: Mapping[str, Any]) -> Any:
        """POST /v1/bills/validate once; returns a ``BillOutcome``."""

    def find_bill(self, reference_code: str) -> dict[str, Any] | None:
        """The bill with exactly this reference code, or None."""

    def iter_bills(self, **filters: Any) -> Any:
        """Every bill matching the filters, all pages."""

    def show_bill(self, number: str) -> dict[str, Any]:
        """The full bill ``data``."""

    def download_pdf(self, number: str) -> Any:
        """``DownloadedFile`` with the PDF bytes."""

    def download_xml(self, number: str) -> Any:
        """``DownloadedFile`` with the XML bytes."""

    def delete_bill(self, reference_code: str) -> str:
        """Delete a pending bill by reference code."""


@dataclass(frozen=True, slots=True)
class SubmitPolicy:
    """Knobs of submission (from ``[submit]`` and ``[factus]`` settings).

    Attributes:
        concurrency: invoices in flight at once.
        max_attempts: tries per round before an invoice is left ``pending`` for the scheduler.
        backoff_base_s, backoff_max_s: exponential backoff with full jitter between tries.
        in_doubt_grace_s: a create with no readable answer is not resent before this long after it
            was sent, even when the bill is not found: the server may still be processing it.
        retry_pending_s: when a pending invoice becomes due again.
        outage_after, outage_hold_s: after this many failures in a row with no answer from Factus
            (connection refused, time-outs), every invoice about to be tried is left ``pending``
            at once for ``outage_hold_s`` after the latest one, instead of each spending its own
            retries: ``run --once`` exits 3 promptly and a watching daemon stops hammering a
            Factus that is down (the scheduler tries again).
    """

    concurrency: int = 4
    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    in_doubt_grace_s: float = 120.0
    retry_pending_s: float = 60.0
    outage_after: int = 6
    outage_hold_s: float = 30.0


def has_rejection(bill: Mapping[str, Any]) -> bool:
    """True when a listed bill carries a DIAN "Rechazo" (notifications alone are not rejections)."""
    errors = bill.get("errors")
    if isinstance(errors, Mapping):
        errors = list(errors.values())
    if not isinstance(errors, list):
        return False
    return any("rechazo" in str(e).lower() for e in errors)


def _status(bill: Mapping[str, Any]) -> int | None:
    value = bill.get("status")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _bill_errors(bill: Mapping[str, Any]) -> list[str]:
    errors = bill.get("errors")
    if isinstance(errors, Mapping):
        return [f"{k}: {v}" for k, v in errors.items()]
    if isinstance(errors, list):
        return [str(e) for e in errors]
    return []


def _rule_of(text: str) -> str | None:
    marker = "regla:"
    low = text.lower()
    if marker in low:
        rest = text[low.index(marker) + len(marker) :].strip()
        return rest.split(",")[0].split()[0] if rest else None
    return None


class _CreateGate:
    """At most ``limit`` creates in flight; only one for a while after a 409 appeared."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._inflight = 0
        self._serial_until = 0.0
        self._cond = threading.Condition()

    def serialise(self, for_s: float = _SERIAL_FOR_S) -> None:
        with self._cond:
            self._serial_until = max(self._serial_until, time.monotonic() + for_s)

    def _cap(self) -> int:
        return 1 if time.monotonic() < self._serial_until else self._limit

    def acquire(self, stop: threading.Event) -> bool:
        with self._cond:
            while self._inflight >= self._cap():
                if stop.is_set():
                    return False
                self._cond.wait(0.1)
            self._inflight += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()


Step = tuple[Literal["done", "retry", "wait", "stop"], float]


class Submitter:
    """Runs invoice workers: submit, reconcile, resolve conflicts, download documents.

    Args:
        ledger: the durable ledger.
        client: the Factus client (shared rate limiter inside).
        outbox: where PDFs and XMLs are written.
        policy: concurrency, attempts, backoff and grace.
        on_done: called with the reference code whenever a worker finishes (success or not).
        rng: jitter source.
    """

    def __init__(
        self,
        ledger: SqliteLedger,
        client: BillClient,
        outbox: Outbox,
        policy: SubmitPolicy,
        *,
        on_done: Callable[[str], None] = lambda ref: None,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.outbox = outbox
        self.policy = policy
        self._on_done = on_done
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=policy.concurrency, thread_name_prefix="submit")
        self._gate = _CreateGate(policy.concurrency)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active: set[str] = set()
        self._resolve_lock = threading.Lock()
        self._stripes = [threading.RLock() for _ in range(_STRIPES)]
        self.stop_event = threading.Event()
        self.auth_ok = threading.Event()
        self.auth_ok.set()
        self.auth_error: str | None = None
        self._outage_streak = 0  # failures in a row with no answer from Factus
        self._outage_last = 0.0  # monotonic time of the latest one
        self._outage_error = ""
        self._deferred: list[tuple[float, int, str]] = []  # (monotonic due time, seq, reference)
        self._carry: dict[str, tuple[int, int]] = {}  # attempts used and free waits of a deferred one
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._timer: threading.Thread | None = None

    # -- scheduling ------------------------------------------------------------------------------

    def schedule(self, reference_code: str) -> bool:
        """Start a worker for this invoice unless one is already running; False when not started."""
        with self._lock:
            if reference_code in self._active or self.stop_event.is_set():
                return False
            self._active.add(reference_code)
        try:
            self._pool.submit(self._run, reference_code)
        except RuntimeError:  # pool shut down
            self._finish(reference_code, notify=False)
            return False
        return True

    def _ref_lock(self, reference_code: str) -> threading.RLock:
        """The lock held while one thread makes an attempt for this invoice."""
        digest = hashlib.blake2s(reference_code.encode("utf-8"), digest_size=4).digest()
        return self._stripes[int.from_bytes(digest, "big") % _STRIPES]

    def is_active(self, reference_code: str) -> bool:
        """True while a worker handles this invoice."""
        with self._lock:
            return reference_code in self._active

    def active_count(self) -> int:
        """Invoices being handled right now."""
        with self._lock:
            return len(self._active)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until no worker runs (True) or ``timeout_s`` passes (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while self._active:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.1 if remaining is None else min(0.1, remaining))
        return True

    def shutdown(self, timeout_s: float) -> bool:
        """Stop starting attempts, let in-flight requests finish; True when drained in time."""
        self.stop_event.set()
        with self._wake:
            self._wake.notify_all()  # deferred invoices are parked at once
        drained = self.wait_idle(timeout_s)
        self._pool.shutdown(wait=drained, cancel_futures=True)
        return drained

    def pause_for_auth(self, error: str) -> None:
        """Stop submitting until :meth:`resume_auth` (credentials or tokens refused)."""
        if self.auth_ok.is_set():
            _log.error("submission_paused", reason="authentication", error=redact(error))
        self.auth_error = redact(error)
        self.auth_ok.clear()

    def resume_auth(self) -> bool:
        """Resume after a successful sign-in; True when submissions were paused."""
        if self.auth_ok.is_set():
            return False
        self.auth_error = None
        self.auth_ok.set()
        _log.info("submission_resumed")
        return True

    def _failed(self, exc: TransientError) -> None:
        """Note a transient failure; one without any answer from Factus counts toward an outage."""
        if exc.status_code is not None:
            return
        with self._lock:
            self._outage_streak += 1
            self._outage_last = time.monotonic()
            self._outage_error = redact(str(exc))
            if self._outage_streak == self.policy.outage_after:
                _log.warning(
                    "factus_unreachable",
                    failures=self._outage_streak,
                    error=self._outage_error,
                    hold_s=self.policy.outage_hold_s,
                )

    def _answered(self) -> None:
        """Note a successful exchange with Factus: any outage is over."""
        if self._outage_streak:
            with self._lock:
                if self._outage_streak >= self.policy.outage_after:
                    _log.info("factus_reachable_again")
                self._outage_streak = 0

    def outage(self) -> str | None:
        """Why invoices are being left pending now (Factus down), or None."""
        with self._lock:
            if self._outage_streak < self.policy.outage_after:
                return None
            if time.monotonic() - self._outage_last >= self.policy.outage_hold_s:
                return None
            return f"Factus unreachable ({self._outage_error}); the scheduler tries again"

    def _finish(self, ref: str, *, notify: bool = True) -> None:
        # Notify first: whoever waits for "idle" then also sees the follow-up work it triggers.
        if notify:
            try:
                self._on_done(ref)
            except Exception:
                _log.exception("invoice_done_callback_failed", reference_code=ref)
        with self._idle:
            self._active.discard(ref)
            self._idle.notify_all()

    def _defer(self, ref: str, delay: float, used: int, free: int) -> None:
        """Give the worker back while ``ref`` waits ``delay`` seconds; it stays active (``run
        --once`` still waits for it) and is re-queued when due, or parked on shutdown."""
        self._carry[ref] = (used, free)
        with self._wake:
            heapq.heappush(self._deferred, (time.monotonic() + delay, next(self._seq), ref))
            if self._timer is None:
                self._timer = threading.Thread(target=self._requeue_loop, name="submit-defer", daemon=True)
                self._timer.start()
            self._wake.notify_all()

    def _requeue_loop(self) -> None:
        while True:
            due: list[str] = []
            stopping = False
            with self._wake:
                while not due:
                    if self.stop_event.is_set():
                        # drained and retired in one step: a later _defer starts a new thread
                        stopping = True
                        due = [ref for _, _, ref in self._deferred]
                        self._deferred.clear()
                        self._timer = None
                        break
                    now = time.monotonic()
                    while self._deferred and self._deferred[0][0] <= now:
                        due.append(heapq.heappop(self._deferred)[2])
                    if not due:
                        wait = self._deferred[0][0] - now if self._deferred else 0.5
                        self._wake.wait(min(wait, 0.5))
            for ref in due:
                if stopping:
                    self._carry.pop(ref, None)
                    self._park(ref, "stopping")
                    self._finish(ref)
                    continue
                try:
                    self._pool.submit(self._run, ref)
                except RuntimeError:  # pool shut down
                    self._carry.pop(ref, None)
                    self._finish(ref, notify=False)
            if stopping:
                return

    def _run(self, ref: str) -> None:
        deferred = False
        try:
            with structlog.contextvars.bound_contextvars(reference_code=ref):
                deferred = self._work(ref)
        except Exception as exc:
            _log.exception("invoice_worker_failed", reference_code=ref, error=redact(repr(exc)))
            try:
                inv = self.ledger.invoice(ref)
                if inv is not None and inv.state == "planned":
                    self.ledger.update_invoice(
                        ref, state="pending", next_attempt_at=time.time() + self.policy.retry_pending_s
                    )
            except Exception:
                _log.exception("invoice_worker_cleanup_failed", reference_code=ref)
        finally:
            if not deferred:
                self._finish(ref)

    # -- one invoice ---------------------------------------------------------------------------

    def _backoff_cap(self, attempt: int) -> float:
        """The longest backoff after ``attempt`` failures (exponential, capped)."""
        cap: float = min(self.policy.backoff_max_s, self.policy.backoff_base_s * (2**attempt))
        return cap

    def _backoff(self, attempt: int) -> float:
        cap = self._backoff_cap(attempt)
        return self._rng.uniform(cap / 2, cap)

    def _work(self, ref: str) -> bool:
        """Drive one invoice until done, out of attempts, stopped, or deferred (returns True)."""
        with self._ref_lock(ref):
            inv = self.ledger.invoice(ref)
            if inv is None:
                return False
            if inv.hidden_bill:
                self._delete_hidden(inv)
        if inv.state == "validated":
            self._ensure_documents(ref)
            return False
        if inv.state in ("rejected", "invalid"):
            return False
        used, free = self._carry.pop(ref, (0, 0))
        while used < self.policy.max_attempts:
            if self.stop_event.is_set():
                self._park(ref, "stopping")
                return False
            if not self.auth_ok.is_set():
                self._park(ref, "auth", message=self.auth_error)
                return False
            down = self.outage()
            if down is not None:
                self._park(ref, "unreachable", message=down)
                return False
            with self._ref_lock(ref):
                inv = self.ledger.invoice(ref)
                if inv is None:
                    return False
                # Another thread may have finished it while this one waited (conflict resolution).
                step, delay = ("done", 0.0) if inv.terminal else self._attempt(inv)
            if step == "done":
                inv = self.ledger.invoice(ref)
                if inv is not None and inv.state == "validated":
                    self._ensure_documents(ref)
                return False
            if step == "stop":
                return False
            # Waiting for one of our own pending bills to clear does not use up the attempts.
            if step == "wait" and free < _FREE_WAITS:
                free += 1
            else:
                used += 1
            if used < self.policy.max_attempts:
                if delay > _DEFER_S:
                    self._defer(ref, delay, used, free)
                    return True
                if self.stop_event.wait(delay):
                    self._park(ref, "stopping")
                    return False
        inv = self.ledger.invoice(ref)
        if inv is not None and not inv.terminal:
            due = time.time() + self.policy.retry_pending_s
            self.ledger.update_invoice(ref, state="pending", next_attempt_at=due)
            _log.warning(
                "invoice_pending",
                reference_code=ref,
                attempts=inv.attempts,
                last_outcome=inv.last_outcome,
                message=inv.message,
                retry_in_s=self.policy.retry_pending_s,
            )
        return False

    def _park(self, ref: str, why: str, *, message: str | None = None) -> None:
        """Leave an unfinished invoice ``pending`` (never ``submitting``) for a later round."""
        inv = self.ledger.invoice(ref)
        if inv is None or inv.terminal or inv.state == "submitting":
            return
        fields: dict[str, Any] = {"state": "pending", "next_attempt_at": None}
        if message:
            fields["message"] = message
        self.ledger.update_invoice(ref, **fields)
        _log.info("invoice_parked", reference_code=ref, reason=why)

    def _needs_lookup(self, inv: InvoiceRow) -> bool:
        if inv.state == "submitting":
            return True
        if inv.sent_at is None:
            return False
        return inv.last_outcome not in _NOT_CREATED

    def _in_doubt(self, inv: InvoiceRow) -> bool:
        return inv.state == "submitting" or inv.last_outcome in (None, "lost", "unknown")

    def _attempt(self, inv: InvoiceRow, *, nested: bool = False) -> Step:
        """One try: reconcile when needed, then at most one create. Returns what to do next.

        Call with the invoice's :meth:`_ref_lock` held. ``nested``: made while resolving a 409 for
        another invoice (a new 409 is then not resolved again).
        """
        ref = inv.reference_code
        if self._needs_lookup(inv):
            try:
                bill = self.client.find_bill(ref)
            except TransientError as exc:
                self._failed(exc)
                self._note(ref, "lost" if self._in_doubt(inv) else inv.last_outcome, str(exc))
                return "retry", exc.retry_after_s or self._backoff(inv.attempts)
            except (AuthError, ConfigError) as exc:
                self.pause_for_auth(str(exc))
                self._park(ref, "auth", message=str(exc))
                return "stop", 0.0
            self._answered()
            if bill is not None:
                status = _status(bill)
                if status == 1:
                    return self._record_found_validated(inv, bill)
                if has_rejection(bill):
                    if inv.sent_hash == inv.payload_hash:
                        self._record_rejected_from_bill(inv, bill)
                        return "done", 0.0
                    _log.info("stale_rejected_bill", reference_code=ref, number=bill.get("number"))
                    if not self._delete(ref):
                        return "retry", self._backoff(inv.attempts)
                else:
                    _log.info("invoice_resend_pending", reference_code=ref, number=bill.get("number"))
            elif self._in_doubt(inv) and inv.sent_at is not None:
                wait = inv.sent_at + self.policy.in_doubt_grace_s - time.time()
                if wait > 0:
                    _log.info("invoice_in_doubt_wait", reference_code=ref, wait_s=round(wait, 2))
                    if inv.state == "submitting":
                        self.ledger.update_invoice(ref, state="pending", last_outcome="lost")
                    return "wait", wait  # deferred: the worker serves other invoices meanwhile
        return self._create(inv, nested=nested)

    def _create(self, inv: InvoiceRow, *, nested: bool = False) -> Step:
        ref = inv.reference_code
        if not self._gate.acquire(self.stop_event):
            return "stop", 0.0
        try:
            self.ledger.update_invoice(
                ref,
                state="submitting",
                bump_attempts=True,
                sent_at=time.time(),
                sent_hash=inv.payload_hash,
                last_outcome="unknown",
                next_attempt_at=None,
            )
            crash.reach("before_submit")
            started = time.perf_counter()
            try:
                outcome = self.client.create_bill(inv.payload)
            except TransientError as exc:
                crash.reach("after_send")
                self._failed(exc)
                kind = self._transient_kind(exc)
                self.ledger.update_invoice(ref, state="pending", last_outcome=kind, message=redact(str(exc)))
                _log.warning("invoice_send_failed", reference_code=ref, outcome=kind, error=redact(str(exc)))
                return "retry", exc.retry_after_s or self._backoff(inv.attempts)
            except (AuthError, ConfigError) as exc:
                crash.reach("after_send")
                self.ledger.update_invoice(
                    ref, state="pending", last_outcome="auth", message=redact(str(exc))
                )
                self.pause_for_auth(str(exc))
                return "stop", 0.0
            except FactusError as exc:
                crash.reach("after_send")
                self.ledger.update_invoice(
                    ref, state="pending", last_outcome="error", message=redact(str(exc))
                )
                _log.error("invoice_send_refused", reference_code=ref, error=redact(str(exc)))
                return "retry", self._backoff(inv.attempts)
            crash.reach("after_send")
            self._answered()
        finally:
            self._gate.release()
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        return self._record_outcome(inv, outcome, elapsed_ms, nested=nested)

    @staticmethod
    def _transient_kind(exc: TransientError) -> str:
        """How much a failed create may have done at the server.

        ``rate_limited``: refused before any work. ``not_sent``: the connection was never made.
        ``server_error``: Factus answered 5xx, so it is done with the request (look it up, then
        resend). ``lost``: no answer, or a gateway's 502/504: the request may still be running, so
        a bill that is not found yet is only resent after ``in_doubt_grace_s``.
        """
        status = exc.status_code
        if status == 429:
            return "rate_limited"
        if exc.request_sent is False:
            return "not_sent"
        if status is None:
            return "lost"
        if status in (502, 504):
            return "lost"
        return "server_error"

    def _note(self, ref: str, outcome: str | None, message: str) -> None:
        inv = self.ledger.invoice(ref)
        if inv is None or inv.terminal:
            return
        state = "pending" if inv.state != "submitting" else "submitting"
        self.ledger.update_invoice(ref, state=state, last_outcome=outcome, message=redact(message))

    def _record_outcome(
        self, inv: InvoiceRow, outcome: _Outcome, elapsed_ms: int, *, nested: bool = False
    ) -> Step:
        ref = inv.reference_code
        kind = outcome.kind
        if kind == "validated":
            self.ledger.update_invoice(
                ref,
                state="validated",
                number=outcome.number,
                cufe=outcome.cufe,
                qr=outcome.qr,
                total=None if outcome.total is None else f"{outcome.total:.2f}",
                bill_id=outcome.bill_id,
                notifications=list(outcome.notifications),
                errors=[],
                message=None,
                last_outcome="validated",
                validated_at=_now_iso(),
            )
            _log.info(
                "invoice_validated",
                reference_code=ref,
                number=outcome.number,
                attempts=inv.attempts + 1,
                elapsed_ms=elapsed_ms,
            )
            crash.reach("after_validated")
            return "done", 0.0
        if kind == "rejected":
            errors = [self._error(inv, None, None, msg, rule) for rule, msg in outcome.rules.items()]
            if not errors:
                errors = [self._error(inv, None, None, outcome.message or "rejected by DIAN", None)]
            self.ledger.update_invoice(
                ref,
                state="rejected",
                errors=errors,
                notifications=list(outcome.notifications),
                message=redact(outcome.message),
                last_outcome="rejected",
                hidden_bill=1,
            )
            _log.warning("invoice_rejected", reference_code=ref, rules=sorted(outcome.rules))
            self._delete_hidden(self.ledger.invoice(ref))
            return "done", 0.0
        if kind == "invalid":
            errors = [
                self._error(inv, field, _payload_value(inv.payload, field), "; ".join(msgs), None)
                for field, msgs in outcome.field_errors.items()
            ] or [self._error(inv, None, None, outcome.message or "refused by Factus", None)]
            self.ledger.update_invoice(
                ref, state="invalid", errors=errors, message=redact(outcome.message), last_outcome="invalid"
            )
            _log.warning("invoice_invalid", reference_code=ref, fields=sorted(outcome.field_errors))
            return "done", 0.0
        if kind == "dian_pending":
            self.ledger.update_invoice(
                ref,
                state="pending",
                last_outcome="dian_pending",
                number=outcome.number,
                message=redact(outcome.message or "DIAN did not answer in time; the same invoice is resent"),
            )
            _log.info("invoice_dian_pending", reference_code=ref, number=outcome.number)
            return "retry", self._backoff(inv.attempts)
        # conflict: nothing was created; free the account, go one at a time for a while
        self.ledger.update_invoice(
            ref, state="pending", last_outcome="conflict", message=redact(outcome.message or "409")
        )
        _log.info("invoice_conflict", reference_code=ref)
        self._gate.serialise()
        if nested:
            return "retry", self._backoff(0)
        ours, progress, due_in = self.resolve_conflict(ref)
        if ours and progress:
            return "wait", min(1.0, self._backoff(0))  # a blocker just cleared: try again soon
        # our blocker is still DIAN-pending (or not ours): wait for its next resend, spending attempts
        return "retry", max(min(due_in, self.policy.backoff_max_s), self._backoff(inv.attempts))

    @staticmethod
    def _error(
        inv: InvoiceRow, column: str | None, value: Any, message: str, rule: str | None
    ) -> dict[str, Any]:
        return {
            "row": inv.rows[0] if inv.rows else None,
            "column": column,
            "value": value,
            "message": redact(message),
            "rule": rule or _rule_of(message),
        }

    def _record_found_validated(self, inv: InvoiceRow, bill: Mapping[str, Any]) -> Step:
        ref = inv.reference_code
        number = str(bill.get("number") or "")
        if not number:
            return "retry", self._backoff(inv.attempts)
        try:
            data = self.client.show_bill(number)
        except TransientError as exc:
            self._failed(exc)
            return "retry", exc.retry_after_s or self._backoff(inv.attempts)
        except FactusError as exc:
            _log.warning("invoice_show_failed", reference_code=ref, number=number, error=redact(str(exc)))
            data = {}
        shown = data.get("bill") if isinstance(data.get("bill"), Mapping) else {}
        assert isinstance(shown, Mapping)
        total = shown.get("total", bill.get("total"))
        bill_id = shown.get("id", bill.get("id"))
        self.ledger.update_invoice(
            ref,
            state="validated",
            number=number,
            cufe=_str_or_none(shown.get("cufe")),
            qr=_str_or_none(shown.get("qr")),
            total=_money(total),
            bill_id=bill_id if isinstance(bill_id, int) else None,
            errors=[],
            message=None,
            last_outcome="validated",
            validated_at=_now_iso(),
        )
        _log.info("invoice_validated", reference_code=ref, number=number, reconciled=True)
        crash.reach("after_validated")
        return "done", 0.0

    def _record_rejected_from_bill(self, inv: InvoiceRow, bill: Mapping[str, Any]) -> None:
        ref = inv.reference_code
        texts = [t for t in _bill_errors(bill) if "rechazo" in t.lower()]
        errors = [self._error(inv, None, None, t, None) for t in texts]
        self.ledger.update_invoice(
            ref, state="rejected", errors=errors, last_outcome="rejected", hidden_bill=1, message=None
        )
        _log.warning("invoice_rejected", reference_code=ref, reconciled=True)
        self._delete_hidden(self.ledger.invoice(ref))

    def _delete(self, ref: str) -> bool:
        try:
            self.client.delete_bill(ref)
        except NotFoundError:
            pass
        except TransientError as exc:
            self._failed(exc)
            _log.warning("hidden_bill_delete_failed", reference_code=ref, error=redact(str(exc)))
            return False
        except FactusError as exc:
            _log.error("hidden_bill_delete_refused", reference_code=ref, error=redact(str(exc)))
            return False
        _log.info("hidden_bill_deleted", reference_code=ref)
        return True

    def _delete_hidden(self, inv: InvoiceRow | None) -> None:
        """Delete the pending bill Factus keeps after a rejection, so the account is not blocked."""
        if inv is None or not inv.hidden_bill or inv.state != "rejected":
            return
        if self._delete(inv.reference_code):
            self.ledger.update_invoice(inv.reference_code, hidden_bill=0)

    def _resend_due_in(self, inv: InvoiceRow) -> float:
        """Seconds before our DIAN-pending invoice may be sent again (0: now): its own backoff, or
        the scheduler's next round once its worker gave up for now."""
        now = time.time()
        if inv.next_attempt_at is not None and inv.next_attempt_at > now:
            return inv.next_attempt_at - now
        if inv.sent_at is None:
            return 0.0
        due: float = inv.sent_at + self._backoff_cap(max(inv.attempts - 1, 0)) / 2 - now
        return max(0.0, due)

    def resolve_conflict(self, blocked_ref: str) -> tuple[bool, bool, float]:
        """Free the account after a 409: resolve our pending bills, leave the others alone.

        A DIAN-pending bill of ours is resent only when its own backoff allows: 409s of other
        invoices must not turn into a resend per 409 (which spent the whole request budget).

        Returns:
            ``(ours, progress, due_in)``: ``ours`` is False when a pending document that is not
            ours blocks the account (or the lookup failed); ``progress`` is True when a blocker
            was cleared (validated, rejected, deleted); ``due_in`` is the seconds until the next
            blocker of ours may be resent (0 when none is waiting).
        """
        if not self._resolve_lock.acquire(blocking=False):
            with self._resolve_lock:  # someone else resolved it meanwhile
                return True, True, 0.0
        foreign = False
        progress = False
        due_in = float("inf")
        try:
            try:
                pending = list(self.client.iter_bills(status=0))
            except (TransientError, AuthError, FactusError) as exc:
                _log.warning("conflict_lookup_failed", error=redact(str(exc)))
                return False, False, 0.0
            for bill in pending:
                ref = str(bill.get("reference_code") or "")
                inv = self.ledger.invoice(ref) if ref else None
                if inv is None:
                    msg = (
                        f"Factus holds a pending document {bill.get('number')} (reference {ref or '?'}) "
                        "that this daemon did not create; it blocks new invoices until it is resolved "
                        "in Factus"
                    )
                    _log.error("foreign_pending_document", number=bill.get("number"), reference_code=ref)
                    self._note(blocked_ref, "conflict", msg)
                    foreign = True
                    continue
                lock = self._ref_lock(ref)
                if not lock.acquire(blocking=False):
                    continue  # another thread is making an attempt for it right now
                try:
                    inv = self.ledger.invoice(ref)
                    if inv is None:
                        continue
                    if has_rejection(bill):
                        if not inv.terminal and inv.sent_hash == inv.payload_hash:
                            self._record_rejected_from_bill(inv, bill)
                            progress = True
                        elif self._delete(ref):
                            progress = True
                            if inv.hidden_bill:
                                self.ledger.update_invoice(ref, hidden_bill=0)
                    elif ref != blocked_ref and not inv.terminal:
                        wait = self._resend_due_in(inv)
                        if wait <= 0:
                            # Ours, DIAN-pending and due: resend it now, whether or not its worker is queued.
                            _log.info(
                                "conflict_resend_pending", reference_code=ref, number=bill.get("number")
                            )
                            self._attempt(inv, nested=True)
                            after = self.ledger.invoice(ref)
                            if after is None or after.terminal:
                                progress = True
                            else:
                                wait = self._resend_due_in(after)
                        if wait > 0:
                            due_in = min(due_in, wait)
                finally:
                    lock.release()
                if ref != blocked_ref:
                    self.schedule(ref)  # its documents, or its next try
        finally:
            self._resolve_lock.release()
        if due_in == float("inf"):  # nothing of ours is left waiting: the account should be free
            return not foreign, not foreign, 0.0
        return not foreign, progress, due_in

    # -- documents ---------------------------------------------------------------------------

    def _ensure_documents(self, ref: str) -> bool:
        """Download and write the PDF and XML of a validated invoice when missing; True when both exist."""
        inv = self.ledger.invoice(ref)
        if inv is None or inv.state != "validated" or not inv.number:
            return False
        file = self.ledger.file(inv.file_id)
        if not file.batch_dir:
            return False
        batch = Path(file.batch_dir)
        have = self.ledger.documents(ref)
        for kind in ("pdf", "xml"):
            doc = have.get(kind)
            if doc is not None and Path(doc.path).is_file():
                continue
            for attempt in range(self.policy.max_attempts):
                try:
                    got: _File = (
                        self.client.download_pdf(inv.number)
                        if kind == "pdf"
                        else self.client.download_xml(inv.number)
                    )
                    break
                except TransientError as exc:
                    self._failed(exc)
                    if self.stop_event.wait(exc.retry_after_s or self._backoff(attempt)):
                        return False
                except AuthError as exc:
                    self.pause_for_auth(str(exc))
                    return False
                except FactusError as exc:
                    _log.error(
                        "document_download_failed", reference_code=ref, kind=kind, error=redact(str(exc))
                    )
                    return False
            else:
                _log.warning("document_download_pending", reference_code=ref, kind=kind)
                return False
            written = self.outbox.write_document(batch, inv.number, kind, got.content)
            self.ledger.record_document(ref, kind, str(written.path), written.sha256, written.size_bytes)
            _log.info("document_written", reference_code=ref, kind=kind, path=str(written.path))
        return True


def _payload_value(payload: Mapping[str, Any], field: str) -> Any:
    node: Any = payload
    for part in field.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if isinstance(node, Mapping | list):
        return None
    return str(node) if isinstance(node, Decimal) else node


def _money(value: Any) -> str | None:
    try:
        return None if value is None else f"{to_decimal(value):.2f}"
    except ValueError:
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _now_iso() -> str:
    from daemon.service.ledger import utc_now

    return utc_now()
