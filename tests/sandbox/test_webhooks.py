"""The sandbox delivers signed webhook events, shaped as the spec says, to local receivers."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pfsync_app.sandbox import Sandbox
from tests.fixtures.sandbox import SandboxApi, webhook_validator


class Receiver:
    """A tiny local webhook receiver that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def events(self) -> list[dict]:
        """The bodies received, decoded."""
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def _subscribe(api: SandboxApi, event_id: str, url: str, secret: str | None = None) -> None:
    body = {"eventId": event_id, "callbackUrl": url, **({"secret": secret} if secret else {})}
    assert api.post("/v1/webhooks", json=body).status_code == 201


def test_adding_a_listing_delivers_a_signed_listing_published(
    sandbox_api: SandboxApi, receiver: Receiver
) -> None:
    _subscribe(sandbox_api, "listing.published", receiver.url, secret="k3y")
    listing_id = sandbox_api.sandbox.data.add_listing()
    assert sandbox_api.sandbox.webhooks.flush()
    [(headers, body)] = receiver.received
    assert headers["X-Signature"] == hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    event = json.loads(body)
    webhook_validator("listing.published").validate(event)
    assert event["type"] == "listing.published"
    assert event["entity"] == {"id": listing_id, "type": "listing"}
    assert event["payload"] == {}


def test_unpublishing_delivers_listing_unpublished_without_a_signature_when_no_secret(
    sandbox_api: SandboxApi, receiver: Receiver
) -> None:
    _subscribe(sandbox_api, "listing.unpublished", receiver.url)
    listing_id = sandbox_api.sandbox.data.listings()[0]["id"]
    sandbox_api.sandbox.data.unpublish_listing(listing_id)
    sandbox_api.sandbox.data.update_listing(listing_id, reference="still down")
    assert sandbox_api.sandbox.webhooks.flush()
    [(headers, body)] = receiver.received
    assert "X-Signature" not in headers
    webhook_validator("listing.unpublished").validate(json.loads(body))


def test_removing_a_live_listing_delivers_listing_unpublished(
    sandbox_api: SandboxApi, receiver: Receiver
) -> None:
    _subscribe(sandbox_api, "listing.unpublished", receiver.url)
    listing_id = sandbox_api.sandbox.data.listings()[0]["id"]
    sandbox_api.sandbox.data.remove_listing(listing_id)
    assert sandbox_api.sandbox.webhooks.flush()
    assert [e["entity"]["id"] for e in receiver.events()] == [listing_id]


def test_user_changes_deliver_user_events(sandbox_api: SandboxApi, receiver: Receiver) -> None:
    for event_id in ("user.created", "user.updated", "user.deactivated"):
        _subscribe(sandbox_api, event_id, receiver.url, secret="abc")
    data = sandbox_api.sandbox.data
    new_id = data.add_user(firstName="Mona")
    data.update_user(new_id, lastName="Haddad", status="inactive")
    assert sandbox_api.sandbox.webhooks.flush()
    events = {e["type"]: e for e in receiver.events()}
    assert set(events) == {"user.created", "user.updated", "user.deactivated"}
    for event_type, event in events.items():
        webhook_validator(event_type).validate(event)
        assert event["entity"] == {"id": str(new_id), "type": "user"}
    changes = {c["fieldName"]: c for c in events["user.updated"]["payload"]["changes"]}
    assert changes["status"] == {
        "fieldName": "status",
        "oldValue": "active",
        "newValue": "inactive",
    }


def test_deliver_sends_one_event_on_demand(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.webhooks.subscribe("listing.published", receiver.url)
    sandbox.webhooks.subscribe("listing.published", receiver.url + "/second")
    listing_id = sandbox.data.listings()[0]["id"]
    assert sandbox.deliver("listing.published", listing_id) == 2
    assert sandbox.webhooks.flush()
    assert len(receiver.received) == 2
    assert all(d.status == 204 for d in sandbox.webhooks.deliveries)


def test_deliver_refuses_unknown_events_and_entities(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match=r"not 'lead\.created'"):
        sandbox.deliver("lead.created", "1")
    with pytest.raises(KeyError, match="no listing 'nope'"):
        sandbox.deliver("listing.published", "nope")


def test_webhooks_go_only_to_local_urls(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match=r"only to 127\.0\.0\.1 or localhost"):
        sandbox.webhooks.subscribe("listing.published", "https://hooks.example.com/pf")
