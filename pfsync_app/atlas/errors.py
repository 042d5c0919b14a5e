"""The Atlas client's exceptions: the context a user needs, never a secret or a token.

Every message is built by the client from the method, the URL (which never
holds a credential: the token travels in a header, the secret in a body) and
the API's own problem+json ``title``/``detail``, with any credential the
client knows of masked out first.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AtlasConnectionError",
    "AtlasError",
    "AuthenticationError",
    "CredentialsMissing",
    "FirewallBlockedError",
    "MalformedResponseError",
    "RateLimitedError",
    "UnreadableRecordError",
]


class AtlasError(Exception):
    """Base class of every error the Atlas client raises."""

    #: Whether the client's retry policy may try the request again.
    retryable: bool = False

    def __init__(self, message: str, *, url: str = "", retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        #: How many attempts were made before giving up (set once retries are exhausted).
        self.attempts = 1
        #: Seconds from the first attempt to giving up, back-off included (set with attempts).
        self.elapsed: float | None = None
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        if self.attempts > 1 and self.elapsed is not None:
            return f"{self.message} ({self.attempts} attempts over {_seconds(self.elapsed)} s)"
        if self.attempts > 1:
            return f"{self.message} ({self.attempts} attempts)"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _seconds(seconds: float) -> str:
    """``35`` or ``0.4``: whole seconds, or a tenth below ten."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"


class AuthenticationError(AtlasError):
    """Atlas refused the credentials or the token (401), even after a fresh token."""


class CredentialsMissing(AuthenticationError):
    """No API key or secret is configured: nothing was sent, so nothing was refused."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"No Atlas {missing} is configured; set it and try again")
        #: What is missing: "API key", "API secret" or "API key and secret".
        self.missing = missing


class RateLimitedError(AtlasError):
    """Atlas answered 429 Too Many Requests until the retries ran out."""

    retryable = True
    status = 429

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, url=url, retryable=retryable)
        #: Seconds the API asked us to wait (its Retry-After header), if it said.
        self.retry_after = retry_after


class ApiError(AtlasError):
    """Atlas answered with an HTTP error status; ``detail`` is the API's own explanation."""

    def __init__(
        self,
        status: int,
        detail: str | None,
        url: str,
        *,
        title: str | None = None,
        method: str = "GET",
        retryable: bool | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.title = title
        self.method = method
        if message is None:
            explanation = ": ".join(part for part in (title, detail) if part)
            message = f"Atlas {method} {url} failed with HTTP {status}"
            if explanation:
                message = f"{message}: {explanation}"
        super().__init__(message, url=url, retryable=retryable)


class FirewallBlockedError(ApiError):
    """Property Finder's CDN answered 403 with its HTML block page instead of the API."""

    retryable = True

    def __init__(self, url: str, *, method: str = "GET", retryable: bool | None = None) -> None:
        super().__init__(
            403,
            "HTML block page from the CDN firewall",
            url,
            method=method,
            retryable=retryable,
            message=(
                f"Atlas {method} {url} was blocked by Property Finder's CDN firewall "
                "(HTML block page, HTTP 403). The CDN blocks addresses that send too many "
                "requests in a short time; wait a few minutes before trying again, and lower "
                "the request rate if it keeps happening"
            ),
        )


class MalformedResponseError(AtlasError):
    """Atlas answered 2xx but the body is not what the spec describes."""


class UnreadableRecordError(MalformedResponseError):
    """The record asked for was returned but cannot be read (a field of the wrong type...).

    Not a fault of the answer as a whole: asking again gets the same record.
    """


class AtlasConnectionError(AtlasError):
    """Atlas could not be reached, or did not answer in time."""
