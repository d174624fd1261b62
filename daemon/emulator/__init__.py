"""The Factus v1 emulator: a real HTTP server on loopback that behaves like the Factus sandbox.

>>> from daemon.emulator import EmulatorConfig, EmulatorServer
>>> with EmulatorServer(EmulatorConfig(port=0)) as server:  # doctest: +SKIP
...     print(server.url)
"""

from daemon.emulator.config import EmulatorConfig
from daemon.emulator.faults import FaultError
from daemon.emulator.server import EmulatorServer, serve

__all__ = ["EmulatorConfig", "EmulatorServer", "FaultError", "serve"]
