"""The HTTP side of the Atlas client: one session, the access token, limits and retries.

A ``Transport`` holds the one ``requests.Session`` (whose pool also serves the
image downloads), the cached access token and the rate limiters. Every
request goes out through ``_send``, under the retry policy declared here with
tenacity; ``answers`` reads what comes back. What the endpoints mean is
``AtlasClient``'s business. The sleep and the clock are injectable so tests
never wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import RemoteDisconnected
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import requests
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_exponential_jitter
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from .. import __version__
from ..deadline import DeadlineAdapter, error_causes, is_timeout, within
from . import answers
from .errors import (
    AtlasConnectionError,
    AtlasError,
    AuthenticationError,
    CredentialsMissing,
    MalformedResponseError,
)
from .ratelimit import RateLimiter

__all__ = ["Transport", "display_url"]

logger = logging.getLogger("pfsync.atlas")

#: Token lifetime assumed when the token answer does not say (the spec's 30 minutes).
DEFAULT_TOKEN_LIFETIME = 1800
#: Renew a token this long before it runs out (less for very short-lived tokens).
TOKEN_RENEW_MARGIN = 60.0
#: Access tokens masked out of error texts: the current one and a few stale ones.
RECENT_TOKENS_REDACTED = 9
#: Attempts for a 2xx answer whose body is not JSON (usually cut off in transit).
MALFORMED_BODY_ATTEMPTS = 3

TOKEN_PATH = "/v1/auth/token"


@dataclass
class _Token:
    """An access token and the clock time at which to renew it."""

    value: str = field(repr=False)
    renew_at: float

    def due(self, now: float) -> bool:
        return now >= self.renew_at


# ---------------------------------------------------------------------------
# The retry policy, declared as tenacity strategies.


class _retry_if_retryable(retry_base):
    """Retry the errors the client marked retryable (connection, 429, 5xx, CDN block...)."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return isinstance(exc, AtlasError) and exc.retryable


class _stop_when_wait_budget_spent(stop_base):
    """Stop once the back-off sleeps of one request add up to ``budget`` seconds."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.idle_for >= self.budget


class _stop_after_malformed_attempts(stop_base):
    """Give bodies that are not JSON only a few attempts: they are rarely fixed by waiting."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        return (
            outcome is not None
            and isinstance(outcome.exception(), MalformedResponseError)
            and retry_state.attempt_number >= self.attempts
        )


class _wait_for_atlas(wait_base):
    """Honour Retry-After (capped), else exponential backoff with jitter; within the budget."""

    def __init__(self, backoff: wait_base, retry_after_cap: float, budget: float) -> None:
        self.backoff = backoff
        self.retry_after_cap = retry_after_cap
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        retry_after = getattr(outcome.exception(), "retry_after", None) if outcome else None
        if retry_after is not None:
            wait = min(retry_after, self.retry_after_cap)
        else:
            wait = self.backoff(retry_state)
        return max(0.0, min(wait, self.budget - retry_state.idle_for))


def _give_up(retry_state: RetryCallState) -> Any:
    """Raise the last error, marked final, with the number of attempts made."""
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, AtlasError):
        exc.attempts = retry_state.attempt_number
        # Back-off sleeps may be recorded rather than slept (tests): count them either way.
        exc.elapsed = max(retry_state.seconds_since_start or 0.0, retry_state.idle_for)
        exc.retryable = False
    if exc is None:  # pragma: no cover - tenacity only stops after a failed attempt
        raise RuntimeError("retries stopped without an error")
    raise exc


# ---------------------------------------------------------------------------
# Small helpers


def display_url(url: str, params: Mapping[str, Any] | None) -> str:
    """The URL as shown in messages and logs (brackets left readable)."""
    if not params:
        return url
    return f"{url}?{urlencode(params, safe='[],:')}"


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the server (so even a POST may be retried)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return any(
        isinstance(cause, NewConnectionError | ConnectTimeoutError) for cause in error_causes(exc)
    )


def _host_port(url: str) -> str:
    """``host:port`` of a URL, the port filled in from the scheme when the URL has none."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _connection_cause(exc: BaseException) -> str:
    """Why no connection was made: "connection refused", "the host name does not resolve"..."""
    causes = error_causes(exc)
    if any(isinstance(cause, NameResolutionError) for cause in causes):
        return "the host name does not resolve"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
    if any(isinstance(cause, ConnectTimeoutError | requests.ConnectTimeout) for cause in causes):
        return "no answer to the connection attempt"
    return "the connection failed"


def _dropped_cause(exc: BaseException) -> str:
    """Why an open connection failed ("the connection was reset"...), or "" when unknown."""
    causes = error_causes(exc)
    for kinds, text in _DROPPED:
        if any(isinstance(cause, kinds) for cause in causes):
            return text
    return ""


# Most specific first: RemoteDisconnected is a ConnectionResetError, both come in a ProtocolError.
_DROPPED: tuple[tuple[Any, str], ...] = (
    (RemoteDisconnected, "the server closed the connection without answering"),
    (ConnectionResetError, "the connection was reset"),
    (requests.exceptions.SSLError, "the TLS connection failed"),
    ((ProtocolError, requests.exceptions.ChunkedEncodingError), "the answer was cut off"),
)


# ---------------------------------------------------------------------------
# The transport


class Transport:
    """The thread-safe HTTP side of ``AtlasClient``: session, token, rate limits, retries."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout: float = 30.0,
        pool_size: int = 32,
        requests_per_minute: int = 650,
        token_requests_per_minute: int = 60,
        max_attempts: int = 6,
        max_retry_wait: float = 120.0,
        retry_after_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Atlas base URL must be an http(s) URL, not {base_url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_attempts = max_attempts
        self.max_retry_wait = float(max_retry_wait)
        self.retry_after_cap = float(retry_after_cap)
        #: The clock (seconds, monotonic) and sleep used by token expiry, back-off and limiters.
        self.clock = clock
        self.sleep = sleep
        self._api_key = api_key
        self._api_secret = api_secret
        # Masked out of any text the client puts in an error: the API secret and webhook
        # secrets for the client's life, and the last few access tokens.
        self._secrets: tuple[str, ...] = tuple(s for s in (api_secret,) if s)
        self._recent_tokens: tuple[str, ...] = ()
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self.rate_limiter = RateLimiter(
            requests_per_minute, 60.0, clock=self._now, sleep=self._sleep
        )
        self.token_rate_limiter = RateLimiter(
            token_requests_per_minute, 60.0, clock=self._now, sleep=self._sleep
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = (
            f"pfsync/{__version__} python-requests/{requests.__version__}"
        )
        # One pool per host, each big enough for all download threads at once;
        # retries are the client's own (declared below), never urllib3's.
        adapter = DeadlineAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    # -- plumbing ------------------------------------------------------------

    def _now(self) -> float:
        return self.clock()

    def _sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def __repr__(self) -> str:
        key = self._api_key
        shown = f"...{key[-4:]}" if len(key) >= 16 else "***"
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={shown!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session and its pooled connections."""
        self.session.close()

    def _redact(self, text: str) -> str:
        for secret in (*self._secrets, *self._recent_tokens):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _keep_secret(self, secret: str) -> None:
        """Mask ``secret`` out of every error text from now on (a webhook's, say)."""
        with self._token_lock:
            self._secrets = (*self._secrets, secret)

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _retrying(self) -> Retrying:
        """The retry policy of one request."""
        return Retrying(
            retry=_retry_if_retryable(),
            stop=(
                stop_after_attempt(self.max_attempts)
                | _stop_when_wait_budget_spent(self.max_retry_wait)
                | _stop_after_malformed_attempts(MALFORMED_BODY_ATTEMPTS)
            ),
            wait=_wait_for_atlas(
                wait_exponential_jitter(max=30, jitter=1),
                retry_after_cap=self.retry_after_cap,
                budget=self.max_retry_wait,
            ),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            retry_error_callback=_give_up,
        )

    def _log_retry(self, retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        logger.warning(
            "%s; attempt %d of %d, retrying in %.1f s",
            exc,
            retry_state.attempt_number,
            self.max_attempts,
            retry_state.upcoming_sleep,
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        shown: str,
        limiter: RateLimiter,
        token: str | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """One HTTP request, after the rate limiter lets it through."""
        # The token goes on each request, never on the session: the session
        # also fetches images from other hosts.
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        limiter.acquire()
        # Failures are re-raised "from None": the new message says what failed,
        # and the original exception's text has not been through _redact.
        response: requests.Response | None = None
        with within(self.timeout) as deadline:
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=deadline.timeouts(),
                    stream=True,
                )
                deadline.cover(response)
                # The whole body within the deadline: a page sent a few bytes at a time
                # would otherwise hold the run, and its lock, for hours.
                response.content  # noqa: B018 - read here, under the deadline
            except requests.RequestException as exc:
                if response is not None:
                    response.close()
                if deadline.passed or isinstance(exc, requests.Timeout) or is_timeout(exc):
                    raise self._timed_out(method, shown, exc, idempotent) from None
                raise AtlasConnectionError(
                    self._failure_text(method, url, shown, exc),
                    url=shown,
                    retryable=idempotent or _never_sent(exc),
                ) from None
            if deadline.fired:
                # A connection cut at the deadline can look like a body that simply ended.
                response.close()
                raise self._timed_out(method, shown, None, idempotent)
        return response

    def _timed_out(
        self, method: str, shown: str, exc: requests.RequestException | None, idempotent: bool
    ) -> AtlasConnectionError:
        return AtlasConnectionError(
            f"Atlas {method} {shown} timed out after {self.timeout:g} s",
            url=shown,
            retryable=idempotent or (exc is not None and _never_sent(exc)),
        )

    def _failure_text(
        self, method: str, url: str, shown: str, exc: requests.RequestException
    ) -> str:
        """What went wrong, in words: never urllib3's "Max retries exceeded..." text."""
        if _never_sent(exc):
            return f"cannot connect to {_host_port(url)}: {_connection_cause(exc)}"
        cause = _dropped_cause(exc)
        if cause:
            return f"Atlas {method} {shown} failed: {cause}"
        return (
            f"Atlas {method} {shown} failed: {type(exc).__name__}: {self._redact(str(exc))[:300]}"
        )

    # -- authentication ------------------------------------------------------

    def authenticate(self) -> None:
        """Make sure the client holds a valid access token; raises ``AuthenticationError``."""
        self._valid_token()

    def _valid_token(self) -> str:
        token = self._token
        if token is None or token.due(self.clock()):
            # One renewal at a time: the CDN blocks bursts of token requests.
            with self._token_lock:
                token = self._token
                if token is None or token.due(self.clock()):
                    token = self._token = self._fetch_token()
        return token.value

    def _renew_token(self, stale: str) -> str:
        """A new token in place of ``stale``, unless another thread has renewed it already."""
        with self._token_lock:
            token = self._token
            if token is None or token.value == stale:
                token = self._token = self._fetch_token()
        return token.value

    def _fetch_token(self) -> _Token:
        """``POST /v1/auth/token`` with the key and secret (with the lock held)."""
        if not self._api_key or not self._api_secret:
            names = [n for n, v in (("key", self._api_key), ("secret", self._api_secret)) if not v]
            raise CredentialsMissing(f"API {' and '.join(names)}")
        url = self._url(TOKEN_PATH)
        started = self.clock()
        try:
            body = self._retrying()(self._token_attempt, url)
            if not isinstance(body, Mapping):
                raise MalformedResponseError(
                    f"Atlas POST {url} answered {type(body).__name__} instead of a token object",
                    url=url,
                )
            value = body.get("accessToken")
            if not isinstance(value, str) or not value:
                raise MalformedResponseError(
                    f"Atlas POST {url} answered without an 'accessToken'", url=url
                )
        except AtlasError as exc:
            # Already retried here: the request that needed the token must not retry it again.
            exc.retryable = False
            raise
        self._recent_tokens = (*self._recent_tokens[-(RECENT_TOKENS_REDACTED - 1) :], value)
        lifetime = body.get("expiresIn")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            logger.warning(
                "Atlas token answer has no usable expiresIn (%r); assuming %d s",
                lifetime,
                DEFAULT_TOKEN_LIFETIME,
            )
            lifetime = DEFAULT_TOKEN_LIFETIME
        margin = min(TOKEN_RENEW_MARGIN, lifetime / 10)
        logger.info("Obtained an Atlas access token valid for %g s", lifetime)
        return _Token(value=value, renew_at=started + lifetime - margin)

    def _token_attempt(self, url: str) -> Any:
        response = self._send(
            "POST",
            url,
            shown=url,
            limiter=self.token_rate_limiter,
            json_body={"apiKey": self._api_key, "apiSecret": self._api_secret},
        )
        status = response.status_code
        # The spec (/v1/auth/token) answers 401 for wrong credentials; a 400 or 422 is a
        # malformed request, the credentials' fault only when its problem type says so.
        refused = status in (401, 403) or (
            status in (400, 422) and answers.problem_type(response) == "AUTHENTICATION"
        )
        if refused and not answers.is_html(response):
            explained = answers.explanation(response, self._redact)
            raise AuthenticationError(
                f"Atlas refused the API credentials (POST {url} answered HTTP {status}"
                f"{': ' + explained if explained else ''}); check the API key and secret",
                url=url,
            )
        answers.raise_for_status("POST", url, response, idempotent=True, redact=self._redact)
        return answers.decode_json("POST", url, response, expect_body=True)

    # -- requests ------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        expect_body: bool = True,
    ) -> Any:
        """An authenticated API request with the retry policy; returns the decoded JSON."""
        url = self._url(path)
        shown = display_url(url, params)
        return self._retrying()(
            self._attempt, method, url, shown, params, json_body, idempotent, expect_body
        )

    def _attempt(
        self,
        method: str,
        url: str,
        shown: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        idempotent: bool,
        expect_body: bool,
    ) -> Any:
        def send(token: str) -> requests.Response:
            return self._send(
                method,
                url,
                shown=shown,
                limiter=self.rate_limiter,
                token=token,
                params=params,
                json_body=json_body,
                idempotent=idempotent,
            )

        token = self._valid_token()
        response = send(token)
        if response.status_code == 401:
            logger.info("Atlas %s %s answered 401; renewing the access token once", method, shown)
            response = send(self._renew_token(stale=token))
            if response.status_code == 401:
                explained = answers.explanation(response, self._redact)
                raise AuthenticationError(
                    f"Atlas {method} {shown} answered HTTP 401 even with a fresh access token"
                    f"{': ' + explained if explained else ''}; check that the API key may "
                    "use this endpoint",
                    url=shown,
                )
        answers.raise_for_status(
            method, shown, response, idempotent=idempotent, redact=self._redact
        )
        return answers.decode_json(method, shown, response, expect_body=expect_body)
