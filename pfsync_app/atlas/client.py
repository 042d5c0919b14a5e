"""The HTTP client of Property Finder's Enterprise API ("Atlas").

One ``AtlasClient`` is shared by every thread of a run: it holds the one
``requests.Session`` (whose pool also serves the image downloads), the cached
access token and the rate limiters. Retries are declared with tenacity; the
sleep and the clock are injectable so tests never wait.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_exponential_jitter
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .. import __version__
from .errors import (
    ApiError,
    AtlasConnectionError,
    AtlasError,
    AuthenticationError,
    FirewallBlockedError,
    MalformedResponseError,
    RateLimitedError,
)
from .ratelimit import RateLimiter
from .records import (
    InvalidRecord,
    Listing,
    Location,
    Page,
    RecordError,
    User,
    Webhook,
    parse_listing,
    parse_location,
    parse_page,
    parse_user,
    parse_webhook,
)

__all__ = ["MAX_PER_PAGE", "AtlasClient"]

logger = logging.getLogger("pfsync.atlas")

T = TypeVar("T")

#: The spec's maximum ``perPage``; asking for more is never sent.
MAX_PER_PAGE = 100
#: Listing ids per ``filter[ids]`` request: keeps URLs short and each answer one page.
LISTING_IDS_PER_REQUEST = 50
#: Token lifetime assumed when the token answer does not say (the spec's 30 minutes).
DEFAULT_TOKEN_LIFETIME = 1800
#: Renew a token this long before it runs out (less for very short-lived tokens).
TOKEN_RENEW_MARGIN = 60.0
#: Access tokens masked out of error texts: the current one and a few stale ones.
RECENT_TOKENS_REDACTED = 9
#: Attempts for a 2xx answer whose body is not JSON (usually cut off in transit).
MALFORMED_BODY_ATTEMPTS = 3
#: Statuses worth another try: the server or a gateway failed, not the request.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
#: ``GET /v1/listings`` parameters that are not ``filter[...]`` ones.
LISTING_QUERY_PARAMS = frozenset({"draft", "archived", "isCtsEligible", "orderBy"})

TOKEN_PATH = "/v1/auth/token"
USERS_PATH = "/v1/users"
LISTINGS_PATH = "/v1/listings"
LOCATIONS_PATH = "/v1/locations"
WEBHOOKS_PATH = "/v1/webhooks"


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
        exc.retryable = False
    if exc is None:  # pragma: no cover - tenacity only stops after a failed attempt
        raise RuntimeError("retries stopped without an error")
    raise exc


# ---------------------------------------------------------------------------
# Small helpers


def _display_url(url: str, params: Mapping[str, Any] | None) -> str:
    """The URL as shown in messages and logs (brackets left readable)."""
    if not params:
        return url
    return f"{url}?{urlencode(params, safe='[],:')}"


def _is_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    if "text/html" in content_type:
        return True
    if "json" in content_type:
        return False
    return response.content[:512].lstrip().lower().startswith((b"<!doctype html", b"<html"))


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), if there is a usable one."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the server (so even a POST may be retried)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def listing_query(filters: Mapping[str, Any]) -> dict[str, str]:
    """``GET /v1/listings`` query parameters from Python keyword filters.

    ``state="live"`` becomes ``filter[state]=live``, ``location_id=[1, 2]``
    ``filter[locationId]=1,2``, ``draft=True`` ``draft=true``; a key that
    already has brackets (``"sort[createdAt]"``) is sent as it is.
    """
    query: dict[str, str] = {}
    for key, value in filters.items():
        if value is None:
            continue
        if key in {"page", "perPage", "per_page"}:
            raise ValueError(f"{key!r} is set by the page iterator, not by a filter")
        if "[" in key:
            name = key
        else:
            name = _camel(key)
            if name not in LISTING_QUERY_PARAMS:
                name = f"filter[{name}]"
        query[name] = _query_value(value)
    return query


def _per_page(per_page: int) -> int:
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, not {per_page}")
    return min(per_page, MAX_PER_PAGE)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------
# The client


class AtlasClient:
    """Thread-safe client of the Atlas API: auth, retries, rate limits, pages of typed records."""

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
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
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
        return f"AtlasClient(base_url={self.base_url!r}, api_key={shown!r})"

    def __enter__(self) -> AtlasClient:
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
        try:
            return self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=headers,
                timeout=(self.timeout, self.timeout),
            )
        except requests.Timeout as exc:
            raise AtlasConnectionError(
                f"Atlas {method} {shown} timed out after {self.timeout:g} s",
                url=shown,
                retryable=idempotent or _never_sent(exc),
            ) from None
        except requests.RequestException as exc:
            raise AtlasConnectionError(
                f"Atlas {method} {shown} failed: {type(exc).__name__}: "
                f"{self._redact(str(exc))[:300]}",
                url=shown,
                retryable=idempotent or _never_sent(exc),
            ) from None

    def _problem(self, response: requests.Response) -> tuple[str | None, str | None]:
        """The ``title`` and ``detail`` of a problem+json answer (or a short text instead)."""
        if _is_html(response):
            return None, "an HTML page instead of a JSON answer"
        try:
            body = response.json()
        except ValueError:
            text = response.text.strip()
            return None, self._redact(text[:200]) if text else None
        if not isinstance(body, Mapping):
            return None, None
        title = body.get("title") if isinstance(body.get("title"), str) else None
        parts = [body["detail"]] if isinstance(body.get("detail"), str) and body["detail"] else []
        errors = body.get("errors")
        if isinstance(errors, list):
            for error in errors[:5]:
                if isinstance(error, Mapping) and isinstance(error.get("detail"), str):
                    pointer = error.get("pointer")
                    where = f"{pointer}: " if isinstance(pointer, str) and pointer else ""
                    parts.append(f"{where}{error['detail']}")
        detail = "; ".join(parts) or None
        return (
            self._redact(title) if title else None,
            self._redact(detail) if detail else None,
        )

    def _raise_for_status(
        self, method: str, shown: str, response: requests.Response, *, idempotent: bool
    ) -> None:
        """Turn an error answer into the right ``AtlasError``, marked retryable or not."""
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 429:
            retry_after = _retry_after(response)
            title, detail = self._problem(response)
            explanation = ": ".join(p for p in (title, detail) if p) or "Too Many Requests"
            waited = f"; Retry-After {retry_after:g} s" if retry_after is not None else ""
            raise RateLimitedError(
                f"Atlas {method} {shown} was rate limited (HTTP 429: {explanation}){waited}",
                url=shown,
                retry_after=retry_after,
            )
        if status == 403 and _is_html(response):
            raise FirewallBlockedError(shown, method=method)
        title, detail = self._problem(response)
        raise ApiError(
            status,
            detail,
            shown,
            title=title,
            method=method,
            # A POST that failed on the server may have been applied: not retried.
            retryable=idempotent and status in RETRYABLE_STATUSES,
        )

    def _json(
        self, method: str, shown: str, response: requests.Response, *, expect_body: bool
    ) -> Any:
        if not response.content:
            if not expect_body:
                return None
            raise MalformedResponseError(
                f"Atlas {method} {shown} answered HTTP {response.status_code} with an empty body",
                url=shown,
                retryable=True,
            )
        try:
            return response.json()
        except ValueError:
            content_type = response.headers.get("Content-Type", "none")
            raise MalformedResponseError(
                f"Atlas {method} {shown} answered HTTP {response.status_code} with a body "
                f"that is not valid JSON ({len(response.content)} bytes, Content-Type "
                f"{content_type}); it may have been cut off in transit",
                url=shown,
                retryable=True,
            ) from None

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
            missing = "API key" if not self._api_key else "API secret"
            raise AuthenticationError(f"No Atlas {missing} is configured; set it and try again")
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
        if status in (400, 401, 403, 422) and not _is_html(response):
            title, detail = self._problem(response)
            explanation = ": ".join(p for p in (title, detail) if p)
            raise AuthenticationError(
                f"Atlas refused the API credentials (POST {url} answered HTTP {status}"
                f"{': ' + explanation if explanation else ''}); check the API key and secret",
                url=url,
            )
        self._raise_for_status("POST", url, response, idempotent=True)
        return self._json("POST", url, response, expect_body=True)

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
        shown = _display_url(url, params)
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
                title, detail = self._problem(response)
                explanation = ": ".join(p for p in (title, detail) if p)
                raise AuthenticationError(
                    f"Atlas {method} {shown} answered HTTP 401 even with a fresh access token"
                    f"{': ' + explanation if explanation else ''}; check that the API key may "
                    "use this endpoint",
                    url=shown,
                )
        self._raise_for_status(method, shown, response, idempotent=idempotent)
        return self._json(method, shown, response, expect_body=expect_body)

    def _iter_pages(
        self,
        path: str,
        *,
        kind: str,
        items_key: str,
        parser: Callable[[Any], tuple[T, list[RecordError]]],
        params: Mapping[str, Any],
        per_page: int,
    ) -> Iterator[Page[T]]:
        """Every page of a paginated list, following each page's own pagination."""
        # Checked here, not in the generator, so a bad call fails where it is made.
        return self._pages(
            path,
            kind=kind,
            items_key=items_key,
            parser=parser,
            params=params,
            per_page=_per_page(per_page),
        )

    def _pages(
        self,
        path: str,
        *,
        kind: str,
        items_key: str,
        parser: Callable[[Any], tuple[T, list[RecordError]]],
        params: Mapping[str, Any],
        per_page: int,
    ) -> Iterator[Page[T]]:
        page_number = 1
        seen: set[int] = set()
        while True:
            query = {**params, "page": page_number, "perPage": per_page}
            body = self._request("GET", path, params=query)
            shown = _display_url(self._url(path), query)
            page = parse_page(
                body,
                kind=kind,
                items_key=items_key,
                parser=parser,
                url=shown,
                requested_page=page_number,
                requested_per_page=per_page,
            )
            if page.errors:
                logger.warning("%d unreadable %s record(s) on %s", len(page.errors), kind, shown)
            yield page
            seen.add(page_number)
            # Each page's own pagination is trusted as it arrives: the total
            # may change while paging through a list that is being edited.
            next_page = page.next_page
            if not page.items or next_page is None:
                return
            if page.total_pages and page_number >= page.total_pages:
                return
            if next_page <= page_number or next_page in seen:
                raise MalformedResponseError(
                    f"Atlas answer from {shown} names page {next_page} as the next page "
                    f"after page {page_number}; stopped to avoid a loop",
                    url=shown,
                )
            page_number = next_page

    # -- users -----------------------------------------------------------------

    def iter_user_pages(self, per_page: int = MAX_PER_PAGE, **params: Any) -> Iterator[Page[User]]:
        """Every page of ``GET /v1/users`` (``data``); ``params`` are its query filters."""
        query = {key: _query_value(value) for key, value in params.items() if value is not None}
        return self._iter_pages(
            USERS_PATH,
            kind="user",
            items_key="data",
            parser=parse_user,
            params=query,
            per_page=per_page,
        )

    def get_user(self, user_id: int | str) -> User | None:
        """The user with this id (``GET /v1/users?id=``), or None when the API has none."""
        wanted = str(user_id)
        for page in self.iter_user_pages(id=wanted):
            for user in page.items:
                if str(user.id) == wanted:
                    return user
            for error in page.errors:
                if error.record_id == wanted:
                    raise MalformedResponseError(f"Atlas answered an unreadable {error}")
        return None

    # -- listings --------------------------------------------------------------

    def iter_listing_pages(
        self, per_page: int = MAX_PER_PAGE, **filters: Any
    ) -> Iterator[Page[Listing]]:
        """Every page of ``GET /v1/listings`` (``results``); see ``listing_query`` for filters."""
        return self._iter_pages(
            LISTINGS_PATH,
            kind="listing",
            items_key="results",
            parser=parse_listing,
            params=listing_query(filters),
            per_page=per_page,
        )

    def iter_listing_pages_by_ids(
        self, ids: Iterable[str], **filters: Any
    ) -> Iterator[Page[Listing]]:
        """The pages of the listings with these ids (``filter[ids]``, in chunks)."""
        unique = list(dict.fromkeys(str(listing_id) for listing_id in ids))
        for chunk in _chunks(unique, LISTING_IDS_PER_REQUEST):
            yield from self.iter_listing_pages(**filters, **{"filter[ids]": ",".join(chunk)})

    def get_listings(self, ids: Iterable[str], **filters: Any) -> list[Listing]:
        """The listings with these ids; unreadable ones are logged and left out."""
        listings: list[Listing] = []
        for page in self.iter_listing_pages_by_ids(ids, **filters):
            listings.extend(page.items)
            for error in page.errors:
                logger.warning("Atlas listing left out: %s", error)
        return listings

    # -- locations -------------------------------------------------------------

    def iter_location_pages(
        self,
        text: str,
        type: str | None = None,
        parent: str | None = None,
        id: int | str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[Page[Location]]:
        """Every page of ``GET /v1/locations`` matching ``text`` (at least 2 characters)."""
        search = text.strip() if isinstance(text, str) else ""
        if len(search) < 2:
            raise ValueError(f"location search text needs at least 2 characters, not {text!r}")
        query: dict[str, str] = {"search": search}
        for name, value in (("filter[id]", id), ("filter[type]", type), ("filter[parent]", parent)):
            if value is not None and value != "":
                query[name] = str(value)
        return self._iter_pages(
            LOCATIONS_PATH,
            kind="location",
            items_key="data",
            parser=parse_location,
            params=query,
            per_page=per_page,
        )

    def search_locations(
        self,
        text: str,
        type: str | None = None,
        parent: str | None = None,
        id: int | str | None = None,
    ) -> Iterator[Location]:
        """Every location matching ``text``; raises ``ValueError`` for under 2 characters."""
        pages = self.iter_location_pages(text, type=type, parent=parent, id=id)
        return self._items(pages)

    @staticmethod
    def _items(pages: Iterator[Page[T]]) -> Iterator[T]:
        for page in pages:
            for error in page.errors:
                logger.warning("Atlas location left out: %s", error)
            yield from page.items

    # -- webhooks --------------------------------------------------------------

    def _webhook(self, raw: Any, url: str) -> Webhook:
        try:
            return parse_webhook(raw)
        except InvalidRecord as exc:
            raise MalformedResponseError(
                f"Atlas answer from {url} has an unreadable webhook: {exc}", url=url
            ) from None

    def list_webhooks(self, event_type: str | None = None) -> list[Webhook]:
        """The event subscriptions (``GET /v1/webhooks``), optionally of one event type."""
        params = {"eventType": event_type} if event_type else None
        body = self._request("GET", WEBHOOKS_PATH, params=params)
        shown = _display_url(self._url(WEBHOOKS_PATH), params)
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise MalformedResponseError(
                f"Atlas answer from {shown} has no 'data' list of webhooks", url=shown
            )
        return [self._webhook(item, shown) for item in data]

    def subscribe_webhook(self, event_type: str, url: str, secret: str | None = None) -> Webhook:
        """Subscribe ``url`` to ``event_type`` (``POST /v1/webhooks``); signed if ``secret``."""
        if secret is not None and len(secret) > 32:
            raise ValueError(
                f"webhook secret may have at most 32 characters (the API's limit), "
                f"not {len(secret)}"
            )
        payload = {"eventId": event_type, "callbackUrl": url}
        if secret:
            payload["secret"] = secret
            with self._token_lock:
                self._secrets = (*self._secrets, secret)
        # Not idempotent: a retried subscription could register the URL twice.
        body = self._request("POST", WEBHOOKS_PATH, json_body=payload, idempotent=False)
        return self._webhook(body, self._url(WEBHOOKS_PATH))

    def unsubscribe_webhook(self, event_id: str) -> None:
        """Delete the subscription of ``event_id`` (``DELETE /v1/webhooks/{eventId}``)."""
        if not event_id:
            raise ValueError("event_id is required to delete a webhook subscription")
        path = f"{WEBHOOKS_PATH}/{quote(event_id, safe='')}"
        self._request("DELETE", path, expect_body=False)
