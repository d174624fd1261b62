"""The Factus v1 client: tokens, the shared rate limiter, retries and outcome classification."""

from daemon.factus.client import FactusClient, classify_bill_response
from daemon.factus.models import BillOutcome, BillPage, DownloadedFile, EmailContent, OutcomeKind, TokenInfo
from daemon.factus.ratelimit import PRIORITY_DOWNLOAD, PRIORITY_READ, PRIORITY_VALIDATE, RateLimiter
from daemon.factus.retry import RetryPolicy
from daemon.factus.tokens import TokenManager, check_credentials

__all__ = [
    "PRIORITY_DOWNLOAD",
    "PRIORITY_READ",
    "PRIORITY_VALIDATE",
    "BillOutcome",
    "BillPage",
    "DownloadedFile",
    "EmailContent",
    "FactusClient",
    "OutcomeKind",
    "RateLimiter",
    "RetryPolicy",
    "TokenInfo",
    "TokenManager",
    "check_credentials",
    "classify_bill_response",
]
