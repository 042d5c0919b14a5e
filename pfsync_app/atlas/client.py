"""The Atlas API's endpoints: users, listings, locations and webhooks, as typed records.

``AtlasClient`` builds on ``Transport`` (the session, the token, the rate
limits and the retries): here are the API's paths, its query parameters and
its pagination, and the typed records each answer is parsed into. One client
is shared by every thread of a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from .errors import MalformedResponseError, UnreadableRecordError
from .parsing import parse_listing, parse_location, parse_page, parse_user, parse_webhook
from .records import InvalidRecord, Listing, Location, Page, RecordError, User, Webhook
from .transport import Transport, display_url

__all__ = ["MAX_PER_PAGE", "AtlasClient"]

logger = logging.getLogger("pfsync.atlas")

T = TypeVar("T")

#: The spec's maximum ``perPage``; asking for more is never sent.
MAX_PER_PAGE = 100
#: Listing ids per ``filter[ids]`` request: keeps URLs short and each answer one page.
LISTING_IDS_PER_REQUEST = 50
#: ``GET /v1/listings`` parameters that are not ``filter[...]`` ones.
LISTING_QUERY_PARAMS = frozenset({"draft", "archived", "isCtsEligible", "orderBy"})

USERS_PATH = "/v1/users"
LISTINGS_PATH = "/v1/listings"
LOCATIONS_PATH = "/v1/locations"
WEBHOOKS_PATH = "/v1/webhooks"


# ---------------------------------------------------------------------------
# Query parameters


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


class AtlasClient(Transport):
    """Thread-safe client of the Atlas API: auth, retries, rate limits, pages of typed records.

    Built as ``Transport`` is (base URL, key, secret, then its keyword settings).
    """

    # -- pages -----------------------------------------------------------------

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
            shown = display_url(self._url(path), query)
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
                # The client imports nothing of pfsync's upper floors (words.plural included).
                count = len(page.errors)
                noun = "record" if count == 1 else "records"
                logger.warning("%d unreadable %s %s on %s", count, kind, noun, shown)
            yield page
            seen.add(page_number)
            # Each page's own pagination is trusted as it arrives: the total
            # may change while paging through a list that is being edited.
            next_page = page.next_page
            # An empty page ends the list; one whose every record was unreadable does not.
            if not (page.items or page.errors) or next_page is None:
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
                    raise UnreadableRecordError(f"Atlas answered an unreadable {error}")
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

    def get_listings(
        self,
        ids: Iterable[str],
        *,
        unreadable: list[RecordError] | None = None,
        **filters: Any,
    ) -> list[Listing]:
        """The listings with these ids; unreadable ones are left out.

        An unreadable record is appended to ``unreadable`` when the caller gives
        a list (to say why a wanted listing is missing), else logged.
        """
        listings: list[Listing] = []
        for page in self.iter_listing_pages_by_ids(ids, **filters):
            listings.extend(page.items)
            for error in page.errors:
                if unreadable is None:
                    logger.warning("Atlas listing left out: %s", error)
                else:
                    unreadable.append(error)
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
        shown = display_url(self._url(WEBHOOKS_PATH), params)
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
            self._keep_secret(secret)
        # Not idempotent: a retried subscription could register the URL twice.
        body = self._request("POST", WEBHOOKS_PATH, json_body=payload, idempotent=False)
        return self._webhook(body, self._url(WEBHOOKS_PATH))

    def unsubscribe_webhook(self, event_id: str) -> None:
        """Delete the subscription of ``event_id`` (``DELETE /v1/webhooks/{eventId}``)."""
        if not event_id:
            raise ValueError("event_id is required to delete a webhook subscription")
        path = f"{WEBHOOKS_PATH}/{quote(event_id, safe='')}"
        self._request("DELETE", path, expect_body=False)
