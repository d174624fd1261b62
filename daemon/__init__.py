"""factus-daemon: unattended Colombian e-invoicing through the Factus API."""

__version__ = "0.1.0"
