"""When the API cannot be used at all, the run stops with one plain sentence and exit status 2.

An unreachable API is said as "cannot connect to HOST:PORT: connection refused
(N attempts over S s)", never with urllib3's "Max retries exceeded ...
NewConnectionError" text; with no key configured the run says so instead of
claiming Property Finder refused credentials it was never sent.
"""

from __future__ import annotations

import re
import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pfsync_app.atlas import AtlasClient
from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import SyncRun

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_api_stops_pf_sync_with_where_why_and_how_long(settings):
    port = closed_port()
    settings.PF_API_URL = f"http://127.0.0.1:{port}"
    settings.PF_API_KEY, settings.PF_API_SECRET = "key", "secret"

    with pytest.raises(CommandError) as caught:
        call_command("pf_sync", stdout=StringIO(), stderr=StringIO())

    assert caught.value.returncode == 2
    assert re.fullmatch(
        rf"pf_sync could not run: cannot reach the Property Finder API: cannot connect to "
        rf"127\.0\.0\.1:{port}: connection refused \(\d attempts over [\d.]+ s\)",
        str(caught.value),
    )
    assert SyncRun.objects.get(command="pf_sync").message.startswith("cannot reach")


def test_with_the_default_retries_the_sentence_counts_six_attempts_over_about_half_a_minute():
    port = closed_port()
    waits: list[float] = []
    client = AtlasClient(f"http://127.0.0.1:{port}", "key", "secret", sleep=waits.append)

    with pytest.raises(SyncAborted) as caught:
        run_sync(SyncOptions(), client=client)

    message = str(caught.value)
    assert message == (
        f"cannot reach the Property Finder API: cannot connect to 127.0.0.1:{port}: "
        f"connection refused (6 attempts over {sum(waits):.0f} s)"
    )
    assert 31 <= sum(waits) <= 36  # back-off 1+2+4+8+16 s, each with up to 1 s of jitter
    assert "Max retries" not in message and "NewConnectionError" not in message


@pytest.mark.parametrize(
    ("key", "secret", "word"), [("", "secret", "key"), ("", "", "key"), ("key", "", "secret")]
)
def test_no_key_configured_is_said_as_such_not_as_refused_credentials(
    sandbox_settings, settings, key, secret, word
):
    settings.PF_API_KEY, settings.PF_API_SECRET = key, secret

    with pytest.raises(CommandError) as caught:
        call_command("pf_sync", stdout=StringIO(), stderr=StringIO())

    assert caught.value.returncode == 2
    assert str(caught.value) == (
        f"pf_sync could not run: no {word} is configured for the Property Finder API "
        "(set PF_API_KEY and PF_API_SECRET)"
    )
    assert "refused" not in str(caught.value)
    assert not [r for r in sandbox_settings.requests if r.path == "/v1/auth/token"]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("pf_areas", "search", "Dubai"), "pf_areas"),
        (("pf_areas", "link", "1", "--search", "Dubai"), "pf_areas"),
        (("pf_webhooks", "list"), "pf_webhooks"),
        (("pf_webhooks", "unsubscribe", "listing.published"), "pf_webhooks"),
    ],
)
def test_every_api_command_says_no_key_configured_the_same_way(
    sandbox_settings, settings, args, name
):
    settings.PF_API_KEY = ""

    with pytest.raises(CommandError) as caught:
        call_command(*args, stdout=StringIO(), stderr=StringIO())

    assert caught.value.returncode == 2
    assert str(caught.value) == (
        f"{name} could not run: no key is configured for the Property Finder API "
        "(set PF_API_KEY and PF_API_SECRET)"
    )
    assert not [r for r in sandbox_settings.requests if r.path == "/v1/auth/token"]
