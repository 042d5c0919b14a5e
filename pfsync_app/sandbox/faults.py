"""What can go wrong on the sandbox: knobs, scripted faults, rate limits and access tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

API_FAULT_KINDS = (
    "status",
    "html_block",
    "invalid_json",
    "truncated",
    "missing_results",
    "hang",
    "reset",
    "duplicate_first",
    "skip_one",
    "drip",
)
IMAGE_FAULT_KINDS = (
    "404",
    "403",
    "410",
    "slow",
    "huge",
    "html200",
    "truncated",
    "wrong_type",
    "bytes",
    "bomb",
)
# Faults that change the real answer, so they are taken once the answer is known.
ANSWER_FAULT_KINDS = ("truncated", "missing_results", "duplicate_first", "skip_one", "drip")
RANDOM_API_STATUSES = (429, 500, 502)
RANDOM_IMAGE_FAULTS = ("404", "403", "slow", "truncated")
WINDOW_SECONDS = 60.0


@dataclass
class ScriptedFault:
    """One scripted fault: where it applies, what it does, how many more times (None: always)."""

    target: str
    kind: str
    remaining: int | None
    params: dict[str, Any] = field(default_factory=dict)


class TokenStore:
    """Access tokens the sandbox issued, with their expiry on the sandbox's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self.revoked = False

    def issue(self, ttl: float) -> str:
        """A new JWT-shaped token valid for ``ttl`` seconds."""
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
        body = json.dumps({"sub": "sandbox", "jti": secrets.token_hex(8)}).encode()
        token = ".".join(
            (
                header,
                base64.urlsafe_b64encode(body).rstrip(b"=").decode(),
                secrets.token_urlsafe(24),
            )
        )
        with self._lock:
            self._expiry[token] = self._clock() + ttl
        return token

    def problem(self, token: str | None) -> str | None:
        """Why ``token`` is refused, or None when it is good."""
        if self.revoked:
            return "the API credentials were revoked"
        if not token:
            return "missing bearer token"
        with self._lock:
            expiry = self._expiry.get(token)
        if expiry is None:
            return "unknown access token"
        if self._clock() >= expiry:
            return "access token expired"
        return None

    def expire_all(self) -> None:
        """Every token issued so far is expired from now on."""
        with self._lock:
            now = self._clock()
            self._expiry = dict.fromkeys(self._expiry, now)


class SlidingWindow:
    """Requests in the last minute, to answer 429 above a limit."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: deque[float] = deque()

    def hit(self, limit: int | None) -> float | None:
        """Count one request; the seconds to wait when it is over ``limit``, else None."""
        with self._lock:
            now = self._clock()
            while self._hits and self._hits[0] <= now - WINDOW_SECONDS:
                self._hits.popleft()
            if limit is not None and len(self._hits) >= limit:
                return max(0.0, self._hits[0] + WINDOW_SECONDS - now)
            self._hits.append(now)
            return None


class Faults:
    """Runtime knobs and faults of one sandbox; every attribute may be changed while it runs.

    Knobs: ``latency_ms``, ``image_latency_ms``, ``image_bytes``, ``token_ttl`` (seconds),
    ``rate_limit`` (API requests a minute, None for no limit), ``token_rate_limit`` (token
    requests a minute while ``rate_limit`` is set), ``fault_rate`` (share of API requests
    answered 429/500/502), ``image_fault_rate`` (share of image URLs that are 404, 403,
    slow or truncated on first fetch), ``slow_image_seconds``, ``huge_image_bytes`` and
    ``photos`` (serve every image URL, whatever its extension, one of a few noisy 1-3 MB
    JPEG photos of 2000-4000 px made with Pillow, instead of the small flat pictures) and
    ``image_mbps`` (each image body sent at most this many megabits a second, as over a
    real link; None: at once).
    """

    def __init__(
        self,
        *,
        seed: int,
        tokens: TokenStore,
        clock: Callable[[], float],
        latency_ms: float = 0,
        image_latency_ms: float = 0,
        image_bytes: int = 20_000,
        token_ttl: float = 1800,
        rate_limit: int | None = None,
        fault_rate: float = 0.0,
        image_fault_rate: float = 0.0,
    ) -> None:
        self.seed = seed
        self.latency_ms = latency_ms
        self.image_latency_ms = image_latency_ms
        self.image_bytes = image_bytes
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.token_rate_limit: int | None = 60
        self.fault_rate = fault_rate
        self.image_fault_rate = image_fault_rate
        self.slow_image_seconds = 5.0
        self.huge_image_bytes = 30 * 1024 * 1024
        self.photos = False
        self.image_mbps: float | None = None
        self._tokens = tokens
        self._lock = threading.Lock()
        self._api: list[ScriptedFault] = []
        self._images: list[ScriptedFault] = []
        self._random = random.Random(f"{seed}:api-faults")
        self._truncated_once: set[str] = set()
        self.api_window = SlidingWindow(clock)
        self.token_window = SlidingWindow(clock)
        # Listings missing from every /v1/listings answer, as if off Property Finder for a night.
        self._left_out: set[str] = set()
        # (page, change): applied to the store right before that page of a listing fetch.
        self._page_changes: list[tuple[int, Callable[[], None]]] = []

    # --- scripting

    def add(self, path_prefix: str, kind: str, times: int | None = 1, **params: Any) -> None:
        """Answer the next ``times`` API requests under ``path_prefix`` with fault ``kind``.

        A prefix with ``?`` is matched against path and query (``/v1/listings?page=2``).
        ``status`` takes ``status``, optional ``retry_after``, ``content_type``, ``body``;
        ``hang`` takes ``seconds``; ``truncated`` takes ``incomplete`` (declare the whole
        length and close, instead of a short but complete answer); ``drip`` sends a
        successful answer ``piece`` bytes (20) every ``interval`` seconds (0.4), its
        headers too with ``headers=True``.
        """
        if kind not in API_FAULT_KINDS:
            raise ValueError(f"unknown API fault {kind!r}; use one of {', '.join(API_FAULT_KINDS)}")
        if kind == "status" and not isinstance(params.get("status"), int):
            raise ValueError("a 'status' fault needs status=<HTTP status code>")
        _check_times(times)
        with self._lock:
            self._api.append(ScriptedFault(path_prefix, kind, times, params))

    def add_image(
        self, url_or_listing_id: str, kind: str, times: int | None = None, **params: Any
    ) -> None:
        """Answer requests for an image URL (or any image of a listing id) with fault ``kind``.

        ``slow`` takes ``seconds``; ``huge`` takes ``size``; ``truncated`` sends half
        the image, declaring the whole length, or with ``content_length=False`` declaring
        none and closing the connection; ``wrong_type`` serves the image as text/plain
        (or as ``content_type``, "" for none), or with ``body="text"`` a text body as
        image/jpeg; ``bytes`` serves ``body`` (bytes) as the image, with the image's type
        or ``content_type``; ``bomb`` serves a small PNG declaring ``width`` x ``height``
        pixels (50,000 x 50,000).
        """
        if kind not in IMAGE_FAULT_KINDS:
            raise ValueError(
                f"unknown image fault {kind!r}; use one of {', '.join(IMAGE_FAULT_KINDS)}"
            )
        _check_times(times)
        target = url_or_listing_id
        if target.startswith(("http://", "https://")):
            target = urlsplit(target).path
        elif not target.startswith("/"):
            target = f"/images/{target}/"
        with self._lock:
            self._images.append(ScriptedFault(target, kind, times, params))

    def leave_out(self, listing_id: str) -> None:
        """Leave the listing out of every ``/v1/listings`` answer (pages and ``filter[ids]``).

        Its data is untouched: :meth:`bring_back` returns it byte for byte, as a listing
        that was off Property Finder for one night and came back.
        """
        with self._lock:
            self._left_out.add(listing_id)

    def bring_back(self, listing_id: str) -> None:
        """Answer the listing again after :meth:`leave_out`."""
        with self._lock:
            self._left_out.discard(listing_id)

    def left_out(self) -> frozenset[str]:
        """The listings left out of the answers now."""
        with self._lock:
            return frozenset(self._left_out)

    def change_before_page(self, page: int, change: Callable[[], None]) -> None:
        """Apply ``change`` to the store once, right before page ``page`` of a listing fetch.

        Unlike the ``skip_one``/``duplicate_first`` drift (which only shifts the answer),
        the store itself changes between two pages of one fetch, so the later pages
        really shift: a listing removed or added before them moves the rest by one while
        ``pagination.total`` may stay the same.
        """
        if page < 2:
            raise ValueError(f"a change between pages needs page 2 or later, not {page}")
        with self._lock:
            self._page_changes.append((page, change))

    def take_page_change(self, page: int) -> Callable[[], None] | None:
        """The change scripted before ``page`` (used up), or None."""
        with self._lock:
            for index, (wanted, change) in enumerate(self._page_changes):
                if wanted == page:
                    del self._page_changes[index]
                    return change
        return None

    def revoke_credentials(self) -> None:
        """Every token is refused and no new one is issued, until :meth:`restore_credentials`."""
        self._tokens.revoked = True

    def restore_credentials(self) -> None:
        """Undo :meth:`revoke_credentials`."""
        self._tokens.revoked = False

    def expire_tokens(self) -> None:
        """Every token issued so far answers 401 from now on."""
        self._tokens.expire_all()

    def clear(self) -> None:
        """Back to a healthy server: no scripted faults, no fault rates, credentials valid."""
        with self._lock:
            self._api.clear()
            self._images.clear()
            self._truncated_once.clear()
            self._left_out.clear()
            self._page_changes.clear()
        self.fault_rate = 0.0
        self.image_fault_rate = 0.0
        self._tokens.revoked = False

    @property
    def pending(self) -> list[ScriptedFault]:
        """Scripted faults not used up yet, API ones first."""
        with self._lock:
            return [*self._api, *self._images]

    # --- taking faults (the server's side)

    def take(
        self, target: str, kinds: tuple[str, ...], accept: Callable[[str], bool] | None = None
    ) -> ScriptedFault | None:
        """Use up the first API fault for ``target`` (path + ``?`` + query) of one of ``kinds``."""
        path = target.split("?", 1)[0]
        with self._lock:
            for fault in self._api:
                subject = target if "?" in fault.target else path
                if (
                    fault.kind in kinds
                    and subject.startswith(fault.target)
                    and (accept is None or accept(fault.kind))
                ):
                    _use(self._api, fault)
                    return fault
        return None

    def take_image(self, path: str) -> ScriptedFault | None:
        """Use up the first image fault that matches ``path``."""
        with self._lock:
            for fault in self._images:
                if path == fault.target or (
                    fault.target.endswith("/") and path.startswith(fault.target)
                ):
                    _use(self._images, fault)
                    return fault
        return None

    def random_api_status(self) -> int | None:
        """429, 500 or 502 for a share ``fault_rate`` of requests, in a seeded order."""
        if self.fault_rate <= 0:
            return None
        with self._lock:
            roll, pick = self._random.random(), self._random.choice(RANDOM_API_STATUSES)
        return pick if roll < self.fault_rate else None

    def random_image_fault(self, path: str) -> str | None:
        """The fault of image ``path`` when it is one of the ``image_fault_rate`` bad ones."""
        if self.image_fault_rate <= 0:
            return None
        digest = hashlib.sha256(f"{self.seed}:image-fault:{path}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.image_fault_rate:
            return None
        kind = RANDOM_IMAGE_FAULTS[digest[8] % len(RANDOM_IMAGE_FAULTS)]
        if kind == "truncated":
            # Truncated once: a retry gets the whole image, as with a dropped connection.
            with self._lock:
                if path in self._truncated_once:
                    return None
                self._truncated_once.add(path)
        return kind


def _check_times(times: int | None) -> None:
    if times is not None and (not isinstance(times, int) or times < 1):
        raise ValueError(f"times must be a positive number or None for always, not {times!r}")


def _use(faults: list[ScriptedFault], fault: ScriptedFault) -> None:
    if fault.remaining is not None:
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.remove(fault)
