"""Intake: read CSV/XLSX/JSON exports, map them with per-ERP profiles, validate into Factus v1 payloads.

Public API::

    read_invoices(path, *, settings, profile=None, lookups, profiles=None) -> IntakeResult
    load_profiles(directory) -> dict[str, MappingProfile];  select_profile(path, *, inbox, profiles)
    Lookups.load(cache_path, *, source=None, max_age_s=86400);  Lookups.refresh(source)
    dumps_payload(payload) -> str   (Decimals written as exact JSON numbers)
"""

from __future__ import annotations

from daemon.intake.lookups import Lookups
from daemon.intake.models import Invoice, dumps_payload
from daemon.intake.profile import MappingProfile, load_profile, load_profiles, select_profile
from daemon.intake.read import SUPPORTED_SUFFIXES, read_invoices
from daemon.intake.rows import Limits, RowError
from daemon.intake.validate import IntakeResult, PlannedInvoice

__all__ = [
    "SUPPORTED_SUFFIXES",
    "IntakeResult",
    "Invoice",
    "Limits",
    "Lookups",
    "MappingProfile",
    "PlannedInvoice",
    "RowError",
    "dumps_payload",
    "load_profile",
    "load_profiles",
    "read_invoices",
    "select_profile",
]
