"""The sandbox HTTP server (Atlas's API and an image host on 127.0.0.1) and ``Sandbox``."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from pfsync_app.sandbox.faults import ANSWER_FAULT_KINDS, API_FAULT_KINDS, Faults, TokenStore
from pfsync_app.sandbox.images import bomb_png, content_type_for, huge_stream
from pfsync_app.sandbox.locations import LOCATIONS, location_json, location_path
from pfsync_app.sandbox.store import SandboxData
from pfsync_app.sandbox.webhooks import EVENT_TYPES, WebhookHub

logger = logging.getLogger("pfsync.sandbox")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = {
    400: "SCHEMA_VALIDATION",
    401: "AUTHENTICATION",
    403: "AUTHORIZATION",
    404: "NOT_FOUND",
    409: "CONFLICT",
    422: "BUSINESS_VALIDATION",
    429: "RATE_LIMIT",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    504: "TIMEOUT",
}
LOCATION_TYPES = (
    "REGION", "GOVERNORATE", "CITY", "TOWN", "VILLAGE", "DISTRICT", "STREET", "COMMUNITY",
    "SUBCOMMUNITY", "PROJECT", "TOWER", "COMPOUND", "AREA", "PROVINCE", "SUBDISTRICT",
)  # fmt: skip
CDN_BLOCK_PAGE = (
    b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    b"<body><h1>Sorry, you have been blocked</h1><p>You are unable to access "
    b"atlas.propertyfinder.com</p><p>Cloudflare Ray ID: 8d2f1c0e5b7a4e21</p></body></html>"
)
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Something went wrong"
    b"</h1><p>The image you asked for is not available right now.</p></body></html>"
)
S3_ERRORS = {
    403: b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>",
    404: b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>",
    410: b"Gone",
}


class RequestRecord(NamedTuple):
    """One request the sandbox received: method, path and query (last value of each name)."""

    method: str
    path: str
    query: dict[str, str]


class Answer(NamedTuple):
    """A response about to be sent."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


class _BadRequest(Exception):
    def __init__(self, detail: str, pointer: str = "", status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer
        self.status = status


def problem(status: int, detail: str, errors: list[dict] | None = None) -> dict:
    """A problem+json body as the spec's ``Error`` schema shapes it."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPES.get(status, "INTERNAL"),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def _json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    content_type = PROBLEM_JSON if status >= 400 else "application/json"
    try:
        data = json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # A hostile record set by a test (a lone surrogate in a name) is served as JSON
        # escapes, "\ud800", as an API can send it: UTF-8 cannot carry it any other way.
        data = json.dumps(body).encode()
    return Answer(status, data, content_type, headers or {})


def _problem_answer(status: int, detail: str, **kwargs: Any) -> Answer:
    headers = kwargs.pop("headers", None)
    return _json_answer(status, problem(status, detail, **kwargs), headers)


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(
            f"query parameter {name} must be an integer, not {raw!r}", f"/{name}"
        ) from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _BadRequest(f"query parameter {name} must be {bounds}, not {value}", f"/{name}")
    return value


def pagination(total: int, page: int, per_page: int) -> dict:
    """The spec's ``pagination`` object."""
    total_pages = math.ceil(total / per_page)
    return {
        "page": page,
        "perPage": per_page,
        "total": total,
        "totalPages": total_pages,
        "nextPage": page + 1 if page < total_pages else None,
        "prevPage": page - 1 if page > 1 else None,
    }


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    sandbox: Sandbox

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (size caps, timeouts, resets) is normal here.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        logger.exception("sandbox request from %s failed", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pfsync-sandbox"
    sys_version = ""
    timeout = 60
    # Headers and body leave in one segment: no Nagle/delayed-ACK stall on small answers.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read ``Sandbox.requests`` instead."""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # --- plumbing

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length > 0 else b""
        sandbox._record(RequestRecord(self.command, path, query))
        try:
            if path.startswith("/images/"):
                self._image(sandbox, path)
            else:
                target = path + ("?" + parts.query if parts.query else "")
                self._api(sandbox, path, target, query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            logger.exception("sandbox failed to answer %s %s", self.command, path)
            self._send(_problem_answer(500, "the sandbox failed to answer this request"))

    def _send(
        self,
        answer: Answer,
        *,
        declared_length: int | None = None,
        close: bool = False,
        mbps: float | None = None,
    ) -> None:
        self.send_response(answer.status)
        if answer.content_type:
            self.send_header("Content-Type", answer.content_type)
        length = len(answer.body) if declared_length is None else declared_length
        self.send_header("Content-Length", str(length))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self._write_body(answer.body, mbps)
        self.wfile.flush()

    def _write_body(self, body: bytes, mbps: float | None) -> None:
        """Write ``body``, at most ``mbps`` megabits a second when given (a link's speed)."""
        if not mbps:
            self.wfile.write(body)
            return
        step = 64 * 1024
        bits_per_second = mbps * 1_000_000
        started = time.monotonic()
        for offset in range(0, len(body), step):
            piece = body[offset : offset + step]
            # Each piece leaves once the link would have carried it; paced against the
            # clock, so the sleeps' overshoot does not add up.
            ahead = started + (offset + len(piece)) * 8 / bits_per_second - time.monotonic()
            if ahead > 0:
                self.server.sandbox._sleep(ahead)
            self.wfile.write(piece)
            self.wfile.flush()

    def _reset(self) -> None:
        # Linger 0 makes close() send RST: the client sees the connection dropped.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # --- the API

    def _api(self, sandbox: Sandbox, path: str, target: str, query: dict[str, str]) -> None:
        faults = sandbox.faults
        if faults.latency_ms:
            sandbox._sleep(faults.latency_ms / 1000)
        before = tuple(k for k in API_FAULT_KINDS if k not in ANSWER_FAULT_KINDS)
        fault = faults.take(target, before)
        if fault is not None:
            if fault.kind == "hang":
                sandbox._sleep(float(fault.params.get("seconds", 10)))
            else:
                self._scripted_api_fault(fault.kind, fault.params)
                return
        status = faults.random_api_status()
        if status is not None:
            headers = {"Retry-After": "1"} if status == 429 else {}
            self._send(_problem_answer(status, "injected fault", headers=headers))
            return
        token_endpoint = path == "/v1/auth/token"
        limit = faults.token_rate_limit if token_endpoint else faults.rate_limit
        if faults.rate_limit is not None:
            window = faults.token_window if token_endpoint else faults.api_window
            wait = window.hit(limit)
            if wait is not None:
                headers = {"Retry-After": str(max(1, math.ceil(wait)))}
                self._send(_problem_answer(429, "Rate limit exceeded", headers=headers))
                return
        if not token_endpoint:
            auth = self.headers.get("Authorization") or ""
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            reason = sandbox.tokens.problem(token)
            if reason is not None:
                self._send(_problem_answer(401, reason))
                return
        try:
            answer = self._route(sandbox, path, target, query)
        except _BadRequest as exc:
            error = {"detail": exc.detail}
            if exc.pointer:
                error["pointer"] = exc.pointer
            answer = _problem_answer(exc.status, exc.detail, errors=[error])
        if answer.status == 200 and answer.content_type == "application/json":
            cut = faults.take(target, ("truncated", "drip"))
            if cut is not None and cut.kind == "drip":
                self._drip(answer, cut.params)
                return
            if cut is not None:
                half = answer.body[: len(answer.body) // 2]
                if cut.params.get("incomplete"):
                    self._send(
                        answer._replace(body=half), declared_length=len(answer.body), close=True
                    )
                else:
                    self._send(answer._replace(body=half))
                return
        self._send(answer)

    def _drip(self, answer: Answer, params: dict[str, Any]) -> None:
        """Send an answer ``piece`` bytes every ``interval`` seconds (the headers too, if asked)."""
        piece = max(1, int(params.get("piece", 20)))
        interval = float(params.get("interval", 0.4))
        head = (
            f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}\r\n"
            f"Content-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        self.close_connection = True
        data = head + answer.body
        if not params.get("headers"):
            self.wfile.write(head)
            data = answer.body
        for offset in range(0, len(data), piece):
            self.wfile.write(data[offset : offset + piece])
            self.wfile.flush()
            if offset + piece < len(data):
                self.server.sandbox._sleep(interval)

    def _scripted_api_fault(self, kind: str, params: dict[str, Any]) -> None:
        if kind == "reset":
            self._reset()
        elif kind == "html_block":
            self._send(Answer(403, CDN_BLOCK_PAGE, "text/html; charset=UTF-8", {}))
        elif kind == "invalid_json":
            self._send(Answer(200, b'{"results": [{"id": }', "application/json", {}))
        else:  # status
            status = int(params["status"])
            headers = {}
            if params.get("retry_after") is not None:
                headers["Retry-After"] = str(params["retry_after"])
            body = params.get("body")
            if body is None:
                body = problem(status, params.get("detail", "injected fault"))
            if isinstance(body, dict | list):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            content_type = params.get("content_type") or (
                PROBLEM_JSON if status >= 400 else "application/json"
            )
            self._send(Answer(status, body, content_type, headers))

    def _route(self, sandbox: Sandbox, path: str, target: str, query: dict[str, str]) -> Answer:
        method = self.command
        if path == "/v1/auth/token" and method == "POST":
            return self._token(sandbox)
        if path == "/v1/users" and method == "GET":
            return self._users(sandbox, target, query)
        if path == "/v1/listings" and method == "GET":
            return self._listings(sandbox, target, query)
        if path == "/v1/locations" and method == "GET":
            return self._locations(sandbox, target, query)
        if path == "/v1/webhooks" and method == "GET":
            event_type = query.get("eventType") or None
            data = [s.as_json() for s in sandbox.webhooks.subscriptions(event_type)]
            return _json_answer(200, {"data": data})
        if path == "/v1/webhooks" and method == "POST":
            return self._subscribe(sandbox)
        if path.startswith("/v1/webhooks/") and method == "DELETE":
            event_id = path.removeprefix("/v1/webhooks/")
            if sandbox.webhooks.unsubscribe(event_id) == 0:
                return _problem_answer(404, f"no subscription to {event_id!r}")
            return Answer(204, b"", "application/json", {})
        return _problem_answer(404, f"the sandbox has no {method} {path}")

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise _BadRequest("the request body is not valid JSON") from None

    def _token(self, sandbox: Sandbox) -> Answer:
        body = self._json_body()
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object with apiKey and apiSecret")
        errors = [
            {"detail": f"{name} is required", "pointer": f"/{name}", "type": "RequiredField"}
            for name in ("apiKey", "apiSecret")
            if not isinstance(body.get(name), str)
        ]
        if errors:
            return _problem_answer(400, "apiKey and apiSecret are required", errors=errors)
        if sandbox.tokens.revoked:
            return _problem_answer(401, "the API credentials were revoked")
        if body["apiKey"] != sandbox.api_key or body["apiSecret"] != sandbox.api_secret:
            return _problem_answer(401, "invalid API key or secret")
        ttl = sandbox.faults.token_ttl
        token = sandbox.tokens.issue(ttl)
        return _json_answer(
            200, {"accessToken": token, "tokenType": "Bearer", "expiresIn": int(ttl)}
        )

    def _page(self, query: dict[str, str]) -> tuple[int, int]:
        page = _int_param(query, "page", 1, 1, None)
        per_page = _int_param(query, "perPage", 50, 1, 100)
        return page, per_page

    def _paginated(
        self,
        sandbox: Sandbox,
        target: str,
        key: str,
        ids: list,
        fetch: Callable[[list], list[dict]],
        page: int,
        per_page: int,
        extra: dict | None = None,
    ) -> Answer:
        start, end = (page - 1) * per_page, page * per_page

        def drift_applies(kind: str) -> bool:
            return kind != "duplicate_first" or (page > 1 and start <= len(ids))

        drift = sandbox.faults.take(
            target, ("missing_results", "duplicate_first", "skip_one"), drift_applies
        )
        kind = drift.kind if drift else None
        # Pagination drift: a listing added before this page shifts it right by one
        # (the previous page's last one comes again); one removed shifts it left (one is skipped).
        if kind == "duplicate_first":
            start, end = start - 1, end - 1
        elif kind == "skip_one":
            start, end = start + 1, end + 1
        body: dict[str, Any] = {key: fetch(ids[start:end])}
        body["pagination"] = pagination(len(ids), page, per_page)
        body.update(extra or {})
        if kind == "missing_results":
            del body[key]
        return _json_answer(200, body)

    def _users(self, sandbox: Sandbox, target: str, query: dict[str, str]) -> Answer:
        page, per_page = self._page(query)
        users = sandbox.data.users()
        search = (query.get("search") or "").lower()
        status = query.get("status")
        if status and status not in ("active", "inactive"):
            raise _BadRequest(f"status must be active or inactive, not {status!r}", "/status")

        filters = ("search", "status", "roleId", "publicProfileId", "id", "email")
        if not any(query.get(name) for name in filters):
            # Every user as stored, also a hostile one no filter could read (serve_records).
            return self._paginated(sandbox, target, "data", users, list, page, per_page)

        def keep(user: dict) -> bool:
            profile = user.get("publicProfile") or {}
            name = f"{user['firstName']} {user.get('lastName') or ''}".lower()
            return (
                (not search or search in name or search in user["email"].lower())
                and (not status or user["status"] == status)
                and query.get("roleId") in (None, "", str(user["role"]["id"]))
                # The spec's id, publicProfileId and email filters take comma-separated lists.
                and _listed(query.get("publicProfileId"), str(profile.get("id")))
                and _listed(query.get("id"), str(user["id"]))
                and _listed(query.get("email"), user["email"])
            )

        def kept(user: Any) -> bool:
            try:
                return keep(user)
            except (AttributeError, KeyError, TypeError):
                return False  # a hostile record no filter can read (serve_records)

        users = [u for u in users if kept(u)]
        return self._paginated(sandbox, target, "data", users, list, page, per_page)

    def _listings(self, sandbox: Sandbox, target: str, query: dict[str, str]) -> Answer:
        page, per_page = self._page(query)
        data = sandbox.data
        wanted = _split(query.get("filter[ids]"))
        change = None if wanted else sandbox.faults.take_page_change(page)
        if change is not None:
            change()
        draft = query.get("draft") == "true"
        archived = query.get("archived") == "true"
        if wanted:
            ids = data.resolve_ids(wanted)
        else:
            ids = data.listing_ids(include_hidden=draft or archived)
        filters = {
            name: query[name]
            for name in query
            if name.startswith("filter[") and name != "filter[ids]" and query[name]
        }
        left_out = sandbox.faults.left_out()
        if left_out:
            ids = [i for i in ids if i not in left_out]
        if draft or archived or filters:
            # Rare in practice; materialises every listing, fine at sandbox sizes.
            ids = [
                i["id"]
                for i in data.listings_by_id(ids)
                if _listing_matches(i, filters, draft, archived)
            ]
        return self._paginated(sandbox, target, "results", ids, data.listings_by_id, page, per_page)

    def _locations(self, sandbox: Sandbox, target: str, query: dict[str, str]) -> Answer:
        search = (query.get("search") or "").strip()
        if len(search) < 2:
            raise _BadRequest(
                "query parameter search is required and must have at least 2 characters",
                "/search",
            )
        page, per_page = self._page(query)
        location_type = query.get("filter[type]")
        if location_type and location_type not in LOCATION_TYPES:
            raise _BadRequest(
                f"filter[type] {location_type!r} is not a location type", "/filter[type]"
            )
        ids = {int(i) for i in _split(query.get("filter[id]")) if i.isdigit()}
        if query.get("filter[id]") and not ids:
            raise _BadRequest("filter[id] must be location ids", "/filter[id]")
        parent = [p.lower() for p in _split(query.get("filter[parent]"))]
        arabic = (self.headers.get("Accept-Language") or "").lower().startswith("ar")
        needle = search.lower()
        matches = []
        for location in LOCATIONS.values():
            ancestors = [n.name.lower() for n in location_path(location.id)[:-1]]
            if (
                (needle in location.name.lower() or search in location.name_ar)
                and (not ids or location.id in ids)
                and (not location_type or location.type == location_type)
                and (not parent or ancestors[-len(parent) :] == parent)
            ):
                matches.append(location.id)

        def fetch(chunk: list) -> list[dict]:
            return [location_json(i, arabic=arabic) for i in chunk]

        order = {"order": {"by": "name", "direction": "asc"}}
        return self._paginated(sandbox, target, "data", matches, fetch, page, per_page, order)

    def _subscribe(self, sandbox: Sandbox) -> Answer:
        body = self._json_body()
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        errors = [
            {"detail": f"{name} is required", "pointer": f"/{name}", "type": "RequiredField"}
            for name in ("eventId", "callbackUrl")
            if not isinstance(body.get(name), str)
        ]
        if body.get("eventId") not in (None, *EVENT_TYPES):
            errors.append({"detail": "eventId is not a known event type", "pointer": "/eventId"})
        secret = body.get("secret")
        if secret is not None and (not isinstance(secret, str) or len(secret) > 32):
            errors.append(
                {"detail": "secret must be a string of at most 32 characters", "pointer": "/secret"}
            )
        errors += [
            {"detail": f"unknown property {name}", "pointer": f"/{name}"}
            for name in body
            if name not in ("eventId", "callbackUrl", "secret")
        ]
        if errors:
            return _problem_answer(400, "the subscription request is not valid", errors=errors)
        try:
            subscription = sandbox.webhooks.subscribe(body["eventId"], body["callbackUrl"], secret)
        except ValueError as exc:
            return _problem_answer(422, str(exc))
        return _json_answer(201, subscription.as_json())

    # --- the image host

    def _image(self, sandbox: Sandbox, path: str) -> None:
        faults = sandbox.faults
        if self.command not in ("GET", "HEAD"):
            self._send(Answer(405, b"Method Not Allowed", "text/plain", {"Allow": "GET, HEAD"}))
            return
        if faults.image_latency_ms:
            sandbox._sleep(faults.image_latency_ms / 1000)
        scripted = faults.take_image(path)
        kind = scripted.kind if scripted else faults.random_image_fault(path)
        params = scripted.params if scripted else {}
        if kind in ("403", "404", "410"):
            status = int(kind)
            content_type = "text/plain" if status == 410 else "application/xml"
            self._send(Answer(status, S3_ERRORS[status], content_type, {}))
            return
        if kind == "html200":
            self._send(Answer(200, HTML_ERROR_PAGE, "text/html; charset=UTF-8", {}))
            return
        if kind == "huge":
            self._huge(int(params.get("size", faults.huge_image_bytes)))
            return
        if kind == "slow":
            sandbox._sleep(float(params.get("seconds", faults.slow_image_seconds)))
        if sandbox.data.image_size(path) is None:
            self._send(Answer(404, S3_ERRORS[404], "application/xml", {}))
            return
        body = sandbox.data.image_bytes(path)
        content_type = "image/jpeg" if faults.photos else content_type_for(path)
        headers = {"Cache-Control": "public, max-age=31536000", "Accept-Ranges": "bytes"}
        if kind == "bytes":
            body = params["body"]
            content_type = params.get("content_type", content_type)
        elif kind == "bomb":
            body = bomb_png(int(params.get("width", 50_000)), int(params.get("height", 50_000)))
            content_type = "image/png"
        if kind == "truncated" and params.get("content_length", True) is False:
            # No length announced: the body simply ends when the connection closes.
            self._send_until_close(body[: len(body) // 2], content_type, headers)
        elif kind == "truncated":
            self._send(
                Answer(200, body[: len(body) // 2], content_type, headers),
                declared_length=len(body),
                close=True,
            )
        elif kind == "wrong_type" and params.get("body") == "text":
            self._send(Answer(200, b"This is not an image.\n", "image/jpeg", headers))
        elif kind == "wrong_type":
            self._send(Answer(200, body, params.get("content_type", "text/plain"), headers))
        elif kind == "bytes" and params.get("content_length", True) is False:
            self._send_until_close(body, content_type, headers)
        else:
            self._send(Answer(200, body, content_type, headers), mbps=faults.image_mbps)

    def _send_until_close(self, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        """An answer without Content-Length: its body is whatever comes before the close."""
        self.send_response(200)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _huge(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for chunk in huge_stream(size):
                self.wfile.write(chunk)
        except OSError:
            # The client gave up at its size cap, as it should.
            self.close_connection = True


def _listing_matches(listing: dict, filters: dict[str, str], draft: bool, archived: bool) -> bool:
    stage = (listing.get("state") or {}).get("stage")
    if draft and stage != "draft":
        return False
    if archived and stage != "archived":
        return False
    values = {
        "filter[state]": [(listing.get("state") or {}).get("type"), stage],
        "filter[category]": [listing.get("category")],
        "filter[type]": [listing.get("type")],
        "filter[reference]": [listing.get("reference")],
        "filter[furnishingType]": [listing.get("furnishingType")],
        "filter[locationId]": [str((listing.get("location") or {}).get("id"))],
        "filter[assignedToId]": [str((listing.get("assignedTo") or {}).get("id"))],
        "filter[bedrooms]": [listing.get("bedrooms")],
        "filter[bathrooms]": [listing.get("bathrooms")],
        "filter[offeringType]": [
            "sale" if (listing.get("price") or {}).get("type") == "sale" else "rent"
        ],
    }
    for name, raw in filters.items():
        if name in values and not set(_split(raw)) & set(values[name]):
            return False
    return True


def _credentials(seed: int) -> tuple[str, str]:
    rng = random.Random(f"{seed}:credentials")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    key = "sandbox." + "".join(rng.choice(alphabet) for _ in range(32))
    secret = "".join(rng.choice(alphabet + alphabet.upper()) for _ in range(32))
    return key, secret


class Sandbox:
    """A fake Atlas API and image host on 127.0.0.1, deterministic from ``seed``.

    The port is bound when the object is made (``port=0`` picks a free one), so
    ``url`` is known before :meth:`start`. Use it as a context manager, or call
    :meth:`start`/:meth:`stop`, or :meth:`serve_forever` in the foreground.
    """

    def __init__(
        self,
        users: int = 20,
        listings: int = 200,
        images_per_listing: int = 5,
        seed: int = 1,
        port: int = 0,
        latency_ms: float = 0,
        image_latency_ms: float = 0,
        image_bytes: int = 20_000,
        token_ttl: float = 1800,
        rate_limit: int | None = None,
        fault_rate: float = 0.0,
        image_fault_rate: float = 0.0,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, value in (("users", users), ("listings", listings),
                            ("images_per_listing", images_per_listing)):  # fmt: skip
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, not {value}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        for name, rate in (("fault_rate", fault_rate), ("image_fault_rate", image_fault_rate)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if image_bytes < 1:
            raise ValueError(f"image_bytes must be positive, not {image_bytes}")
        if rate_limit is not None and rate_limit < 1:
            raise ValueError(f"rate_limit must be positive or None, not {rate_limit}")
        if token_ttl <= 0:
            raise ValueError(f"token_ttl must be positive, not {token_ttl}")
        default_key, default_secret = _credentials(seed)
        self.api_key = api_key or default_key
        self.api_secret = api_secret or default_secret
        self._sleep = sleep
        self._requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        try:
            self._server = _Server(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise OSError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
        self._server.sandbox = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = TokenStore(clock)
        self.faults = Faults(
            seed=seed,
            tokens=self.tokens,
            clock=clock,
            latency_ms=latency_ms,
            image_latency_ms=image_latency_ms,
            image_bytes=image_bytes,
            token_ttl=token_ttl,
            rate_limit=rate_limit,
            fault_rate=fault_rate,
            image_fault_rate=image_fault_rate,
        )
        self.webhooks = WebhookHub()
        self.data = SandboxData(
            seed=seed,
            users=users,
            listings=listings,
            images_per_listing=images_per_listing,
            base_url=self.url,
            image_size=lambda: self.faults.image_bytes,
            photos=lambda: self.faults.photos,
        )
        self.data.set_listener(self.webhooks.publish)
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Sandbox {self.url}>"

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Sandbox:
        """Serve from a background thread."""
        if self._closed:
            raise RuntimeError("this sandbox was stopped; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and free the port."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        with self._server.connections_lock:
            connections = list(self._server.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.webhooks.close()

    def serve_forever(self) -> None:
        """Serve in the foreground until Ctrl-C or SIGTERM, then stop cleanly."""
        stopping = threading.Event()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        self.start()
        try:
            while not stopping.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.stop()

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far (API and images), oldest first."""
        with self._requests_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests received so far."""
        with self._requests_lock:
            self._requests.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._requests_lock:
            self._requests.append(record)

    def deliver(self, event_type: str, entity_id: str | int) -> int:
        """Send one event now to its subscribers; returns how many deliveries were queued."""
        if (
            event_type not in EVENT_TYPES
            or event_type.split(".", 1)[0] not in ("listing", "user")
            or (event_type == "listing.action")
        ):
            raise ValueError(
                f"the sandbox sends listing.published, listing.unpublished and user.* events,"
                f" not {event_type!r}"
            )
        entity_type = event_type.split(".", 1)[0]
        entity_id = str(entity_id)
        if not self.data.entity_exists(entity_type, entity_id):
            raise KeyError(f"no {entity_type} {entity_id!r} in the sandbox")
        payload: dict[str, Any] = {}
        if entity_type == "user":
            payload["email"] = self.data.user(int(entity_id))["email"]
            if event_type == "user.updated":
                payload["changes"] = []
        return self.webhooks.publish(event_type, entity_type, entity_id, payload)


def _listed(wanted: str | None, value: str) -> bool:
    """Whether ``value`` passes a comma-separated list filter (no filter passes everything)."""
    return not wanted or value in _split(wanted)
