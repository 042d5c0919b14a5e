"""The client of Property Finder's Enterprise API ("Atlas"): HTTP in, typed records out.

This package knows HTTP and the API's shapes only, never Django: the host's
settings are wired into ``AtlasClient``'s arguments elsewhere.
"""

from . import errors, records
from .client import MAX_PER_PAGE, AtlasClient
from .errors import (
    ApiError,
    AtlasConnectionError,
    AtlasError,
    AuthenticationError,
    CredentialsMissing,
    FirewallBlockedError,
    MalformedResponseError,
    RateLimitedError,
)
from .ratelimit import RateLimiter

__all__ = [
    "MAX_PER_PAGE",
    "ApiError",
    "AtlasClient",
    "AtlasConnectionError",
    "AtlasError",
    "AuthenticationError",
    "CredentialsMissing",
    "FirewallBlockedError",
    "MalformedResponseError",
    "RateLimitedError",
    "RateLimiter",
    "errors",
    "records",
]
