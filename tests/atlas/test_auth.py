"""Authentication: the token is fetched once, cached, renewed before expiry and once on a 401."""

from __future__ import annotations

import json
import threading
import time

import pytest
import responses
from responses import matchers

import pfsync_app
from pfsync_app.atlas import ApiError, AtlasClient, AuthenticationError
from tests.fixtures.atlas import (
    API_KEY,
    API_SECRET,
    BASE_URL,
    PROBLEM_JSON,
    TOKEN_URL,
    USERS_URL,
    FakeClock,
    make_client,
    page_body,
    problem,
    token_body,
    user_json,
)

UNAUTHORIZED = problem("Unauthorized", "access denied (decision id: 5593a6df)", "AUTHENTICATION")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def users_ok(api, **kwargs):
    return api.get(USERS_URL, json=page_body([user_json()], key="data"), **kwargs)


def bearer(call) -> str:
    return call.request.headers["Authorization"]


def test_the_token_request_sends_the_key_and_secret_as_json(api, clock):
    token = api.post(
        TOKEN_URL,
        json=token_body(),
        match=[matchers.json_params_matcher({"apiKey": API_KEY, "apiSecret": API_SECRET})],
    )

    make_client(clock).authenticate()

    assert token.call_count == 1


def test_api_requests_carry_the_bearer_token_on_the_request_not_the_session(api, clock):
    api.post(TOKEN_URL, json=token_body("tok-abc"))
    users = users_ok(api)
    client = make_client(clock)

    list(client.iter_user_pages())

    assert bearer(users.calls[0]) == "Bearer tok-abc"
    assert "Authorization" not in client.session.headers


def test_requests_name_pfsync_and_its_version_in_the_user_agent(api, clock):
    api.post(TOKEN_URL, json=token_body())
    users = users_ok(api)

    list(make_client(clock).iter_user_pages())

    user_agent = users.calls[0].request.headers["User-Agent"]
    assert user_agent.startswith(f"pfsync/{pfsync_app.__version__} ")


def test_the_token_is_cached_between_requests(api, clock):
    token = api.post(TOKEN_URL, json=token_body())
    users_ok(api)
    client = make_client(clock)

    for _ in range(3):
        list(client.iter_user_pages())
        clock.advance(60)

    assert token.call_count == 1


def test_the_token_is_renewed_shortly_before_it_expires(api, clock):
    token = api.post(TOKEN_URL, json=token_body("tok-1", expires_in=1800))
    users = users_ok(api)
    client = make_client(clock)
    list(client.iter_user_pages())

    clock.advance(1800 - 120)
    list(client.iter_user_pages())
    assert token.call_count == 1

    token.body = json.dumps(token_body("tok-2"))
    clock.advance(90)  # 30 s before expiry: inside the renewal margin
    list(client.iter_user_pages())

    assert token.call_count == 2
    assert [bearer(call) for call in users.calls] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_authenticate_raises_authentication_error_for_rejected_credentials(api, clock):
    api.post(TOKEN_URL, status=401, json=UNAUTHORIZED, content_type=PROBLEM_JSON)

    with pytest.raises(AuthenticationError) as caught:
        make_client(clock).authenticate()

    message = str(caught.value)
    assert "refused the API credentials" in message
    assert "access denied (decision id: 5593a6df)" in message
    assert clock.sleeps == []


def test_a_400_with_raw_bytes_is_quoted_printable_and_not_called_refused_credentials(api, clock):
    # The spec answers 401 for wrong credentials; a 400 is a malformed request.
    api.post(TOKEN_URL, status=400, body=b"\x00\xff garbage\n\x1b[31mred")

    with pytest.raises(ApiError) as caught:
        make_client(clock).authenticate()

    message = str(caught.value)
    assert not isinstance(caught.value, AuthenticationError)
    assert "credentials" not in message
    assert (
        message == f"Atlas POST {TOKEN_URL} failed with HTTP 400: \\x00\\xff garbage\\n\\x1b[31mred"
    )
    assert message.isprintable()
    assert clock.sleeps == []


def test_a_400_the_api_calls_an_authentication_problem_is_refused_credentials(api, clock):
    api.post(
        TOKEN_URL,
        status=400,
        json=problem("Bad Request", "invalid api key", "AUTHENTICATION"),
        content_type=PROBLEM_JSON,
    )
    with pytest.raises(AuthenticationError, match="refused the API credentials"):
        make_client(clock).authenticate()


def test_a_long_or_multi_line_problem_is_one_short_printable_line(api, clock):
    detail = "line one\nline two\u0007" + "x" * 500
    api.post(
        TOKEN_URL,
        status=422,
        json=problem("Unprocessable Entity", detail, "BUSINESS_VALIDATION"),
        content_type=PROBLEM_JSON,
    )
    with pytest.raises(ApiError) as caught:
        make_client(clock).authenticate()
    message = str(caught.value)
    assert message.isprintable()
    assert "line one\\nline two\\x07xxx" in message
    assert message.endswith("xxx...")
    assert caught.value.detail == caught.value.detail[:200]


def test_authenticate_raises_authentication_error_without_credentials(clock):
    client = AtlasClient(BASE_URL, API_KEY, "", clock=clock, sleep=clock.sleep)

    with pytest.raises(AuthenticationError, match="No Atlas API secret is configured"):
        client.authenticate()


def test_a_401_is_fixed_by_renewing_the_token_once(api, clock):
    token = api.post(TOKEN_URL, json=token_body("tok-old"))
    client = make_client(clock)
    client.authenticate()
    token.body = json.dumps(token_body("tok-new"))
    rejected = api.get(
        USERS_URL,
        status=401,
        json=UNAUTHORIZED,
        content_type=PROBLEM_JSON,
        match=[matchers.header_matcher({"Authorization": "Bearer tok-old"})],
    )
    accepted = users_ok(api, match=[matchers.header_matcher({"Authorization": "Bearer tok-new"})])

    [page] = list(client.iter_user_pages())

    assert page.items[0].id == 40211
    assert (rejected.call_count, token.call_count, accepted.call_count) == (1, 2, 1)
    assert clock.sleeps == []


def test_a_401_that_a_fresh_token_does_not_fix_raises_authentication_error(api, clock):
    token = api.post(TOKEN_URL, json=token_body())
    users = api.get(USERS_URL, status=401, json=UNAUTHORIZED, content_type=PROBLEM_JSON)

    with pytest.raises(AuthenticationError) as caught:
        list(make_client(clock).iter_user_pages())

    assert "401 even with a fresh access token" in str(caught.value)
    assert "access denied" in str(caught.value)
    # One renewal, no retries beyond it.
    assert (token.call_count, users.call_count) == (2, 2)
    assert clock.sleeps == []


def test_eight_threads_starting_at_once_make_one_token_request(api):
    clock = FakeClock()
    tokens = []

    def issue(request):
        tokens.append(request)
        time.sleep(0.05)  # a slow token server widens the window for a stampede
        return 200, {}, json.dumps(token_body())

    api.add_callback(responses.POST, TOKEN_URL, callback=issue)
    users_ok(api)
    client = make_client(clock)
    start = threading.Barrier(8)
    failures = []

    def work():
        start.wait()
        try:
            list(client.iter_user_pages())
        except Exception as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert failures == []
    assert len(tokens) == 1


def test_threads_hitting_401_together_renew_the_token_once(api):
    clock = FakeClock()
    token = api.post(TOKEN_URL, json=token_body("tok-old"))
    client = make_client(clock)
    client.authenticate()
    token.body = json.dumps(token_body("tok-new"))
    api.get(
        USERS_URL,
        status=401,
        json=UNAUTHORIZED,
        content_type=PROBLEM_JSON,
        match=[matchers.header_matcher({"Authorization": "Bearer tok-old"})],
    )
    users_ok(api, match=[matchers.header_matcher({"Authorization": "Bearer tok-new"})])
    start = threading.Barrier(8)

    def work():
        start.wait()
        list(client.iter_user_pages())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert token.call_count == 2
