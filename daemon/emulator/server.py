"""The HTTP server: stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive on loopback.

:class:`EmulatorServer` runs it in a background thread (tests, ``run --emulator``); :func:`serve`
blocks until SIGTERM/SIGINT or a stop event (the ``factus-daemon emulator`` command). Stopping
closes idle keep-alive connections and joins every thread, so nothing leaks between tests. A stopped
:class:`EmulatorServer` can be started again: it listens on the same port with the same state (bills,
tokens, faults), which is how tests make Factus unreachable for a while in the middle of a batch.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self

import structlog

from daemon.emulator.app import App, Request, Response
from daemon.emulator.config import EmulatorConfig
from daemon.emulator.state import EmulatorState

__all__ = ["EmulatorServer", "serve"]

_log = structlog.get_logger("daemon.emulator")
_IDLE_TIMEOUT_S = 120.0
_MAX_BODY_BYTES = 32 * 1024 * 1024


class _BadRequestError(Exception):
    """The request framing (Content-Length, chunk sizes) is not valid HTTP: answer 400."""


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time from a keep-alive connection and hands it to the app."""

    protocol_version = "HTTP/1.1"
    server_version = "FactusEmulator/1.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S
    # Buffer each response and flush it once (handle_one_request flushes), and disable Nagle, so a
    # keep-alive answer leaves in one segment instead of waiting on the client's delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib access log (it would print to stderr); requests are logged as events."""

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise _BadRequestError("invalid chunk size") from None
                if size < 0:
                    raise _BadRequestError("invalid chunk size")
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        raw_length = (self.headers.get("Content-Length") or "0").strip()
        if not raw_length.isdigit():
            raise _BadRequestError(f"invalid Content-Length {raw_length[:40]!r}")
        length = int(raw_length)
        if length > _MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        started = time.perf_counter()
        try:
            body = self._read_body()
        except _BadRequestError:
            self.close_connection = True
            self._send(Response(400, b'{"message":"Bad Request"}'))
            return
        except (ValueError, OSError):
            body = None
        if body is None:
            self.close_connection = True
            self._send(Response(413, b'{"message":"Payload Too Large"}'))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, self.path, headers, body)
        response = self.server.app.handle(request)
        if response.reset:
            self._reset()
            status: int | str = "reset"
        else:
            self._send(response)
            status = response.status
        _log.debug(
            "emulator_request",
            method=self.command,
            path=request.path,
            status=status,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER 0 makes close() send a TCP RST and no response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 makes the kernel reset connections when a few dozen
    # clients connect at once, which a client cannot tell from the reset-after-store fault
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors (client went away) are normal for an emulator under fault injection."""
        _log.debug("emulator_connection_error", client=str(client_address))


class EmulatorServer:
    """The Factus emulator on a background thread.

    >>> with EmulatorServer(EmulatorConfig(port=0)) as server:  # doctest: +SKIP
    ...     httpx.post(server.url + "/oauth/token", data={...})
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = EmulatorState(self.config)
        # Latency faults sleep on this event, so stop() never waits out a long injected delay.
        self._stopping = threading.Event()
        self.app = App(self.state, sleep=self._stopping.wait)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8910`` (the real port when configured with 0)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}"

    def start(self) -> Self:
        """Bind, start serving in a daemon thread and return self (the socket is listening).

        After :meth:`stop`, starting again binds the port used before (even when configured with
        0) and keeps the state, so clients see an outage rather than a new server.
        """
        if self._server is not None:
            return self
        self._stopping.clear()
        port = self._bound_port if self._bound_port is not None else self.config.port
        self._server = _Server((self.config.host, port), self.app)
        self._bound_port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="factus-emulator",
            daemon=True,
        )
        self._thread.start()
        _log.info("emulator_started", url=self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
        _log.info("emulator_stopped")

    @property
    def running(self) -> bool:
        """True while the server accepts connections."""
        return self._server is not None

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token issued since the last reset (secret-leak tests grep for them)."""
        with self.state.lock:
            return list(self.state.issued_tokens)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def set_faults(self, faults: Mapping[str, Any]) -> dict[str, Any]:
        """Merge faults (see :mod:`daemon.emulator.faults`) and return the active ones.

        Raises:
            daemon.emulator.faults.FaultError: unknown key or bad value.
        """
        self.app.set_faults(faults)
        with self.state.lock:
            return self.state.faults.to_dict()

    def reset(self) -> None:
        """Forget bills, tokens, counters and faults (the configuration stays)."""
        with self.state.lock:
            self.state.reset()

    def snapshot(self) -> dict[str, Any]:
        """The same document as ``GET /__emulator__/state``."""
        with self.state.lock:
            return self.state.snapshot()


def serve(
    config: EmulatorConfig,
    *,
    ready: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Run the emulator until SIGTERM/SIGINT (or ``stop_event``); return the exit code 0.

    ``ready`` is called with the base URL once the socket is listening.
    """
    stop = stop_event or threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        with EmulatorServer(config) as server:
            if ready is not None:
                ready(server.url)
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
