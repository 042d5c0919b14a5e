"""Every Atlas request has a total deadline, and a failed connection is said in plain words.

``PF_API_TIMEOUT`` bounds the connection, the headers and the whole body of one
request (``pfsync_app.deadline``); a request past it is retried like a timeout.
The sandbox's ``drip`` fault sends a page a few bytes at a time, each read
quick, the whole far slower than the deadline.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from pfsync_app.atlas import AtlasClient, AtlasConnectionError, CredentialsMissing
from pfsync_app.sandbox import Sandbox


def client_for(sb: Sandbox, **options) -> AtlasClient:
    waits: list[float] = []
    options.setdefault("timeout", 1.0)
    options.setdefault("max_attempts", 3)
    client = AtlasClient(sb.url, sb.api_key, sb.api_secret, sleep=waits.append, **options)
    client.waits = waits
    return client


def listing_requests(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests if r.path == "/v1/listings")


def test_a_page_dripping_in_slower_than_the_timeout_is_cut_and_retried(sandbox):
    # The first page is several kB: at 20 bytes every 0.4 s it would take minutes.
    sandbox.faults.add("/v1/listings", "drip", times=1, piece=20, interval=0.4)
    client = client_for(sandbox)

    pages = list(client.iter_listing_pages())

    assert sum(len(page.items) for page in pages) == len(sandbox.data.listings())
    assert listing_requests(sandbox) == 2
    assert len(client.waits) == 1


def test_a_page_that_always_drips_fails_as_a_timeout_after_every_attempt(sandbox):
    sandbox.faults.add("/v1/listings", "drip", times=None, piece=20, interval=0.4)
    client = client_for(sandbox, max_attempts=2)

    with pytest.raises(AtlasConnectionError) as caught:
        list(client.iter_listing_pages())

    message = str(caught.value)
    assert re.fullmatch(
        r"Atlas GET http://127\.0\.0\.1:\d+/v1/listings\?page=1&perPage=100 timed out after 1 s "
        r"\(2 attempts over [\d.]+ s\)",
        message,
    )
    assert listing_requests(sandbox) == 2


def test_headers_dripping_in_slower_than_the_timeout_are_cut_too(sandbox):
    sandbox.faults.add("/v1/listings", "drip", times=1, piece=8, interval=0.3, headers=True)
    client = client_for(sandbox)

    pages = list(client.iter_listing_pages())

    assert sum(len(page.items) for page in pages) == len(sandbox.data.listings())
    assert listing_requests(sandbox) == 2


def test_a_token_request_dripping_past_the_timeout_is_retried(sandbox):
    sandbox.faults.add("/v1/auth/token", "drip", times=1, piece=5, interval=0.4)
    client = client_for(sandbox)

    client.authenticate()

    assert sum(1 for r in sandbox.requests if r.path == "/v1/auth/token") == 2


def test_a_slow_answer_that_ends_within_the_timeout_is_read_whole(sandbox):
    sandbox.faults.add("/v1/listings", "drip", times=1, piece=4096, interval=0.05)
    client = client_for(sandbox, timeout=5.0)

    pages = list(client.iter_listing_pages())

    assert sum(len(page.items) for page in pages) == len(sandbox.data.listings())
    assert listing_requests(sandbox) == 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_api_is_said_in_words_with_its_attempts_and_time():
    port = closed_port()
    waits: list[float] = []
    client = AtlasClient(f"http://127.0.0.1:{port}", "key", "secret", sleep=waits.append)

    with pytest.raises(AtlasConnectionError) as caught:
        client.authenticate()

    message = str(caught.value)
    assert re.fullmatch(
        rf"cannot connect to 127\.0\.0\.1:{port}: connection refused \(6 attempts over \d+ s\)",
        message,
    )
    assert f"over {sum(waits):.0f} s" in message
    assert "Max retries" not in message and "NewConnectionError" not in message


def test_a_missing_key_is_reported_as_missing_not_as_refused():
    client = AtlasClient("http://127.0.0.1:9", "", "secret")

    with pytest.raises(CredentialsMissing) as caught:
        client.authenticate()

    assert caught.value.missing == "API key"
    assert str(caught.value) == "No Atlas API key is configured; set it and try again"


@pytest.mark.parametrize("module", ["pfsync_app.deadline", "pfsync_app.atlas"])
def test_the_deadline_and_the_atlas_client_load_without_django(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('django')))"

    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert loaded.stdout.strip() == "[]"
