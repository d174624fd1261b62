"""CLI commands of the service area (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register this area's sub-commands."""
