"""The API secret and the access tokens never show in a log line, an exception or a repr."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
import requests
import responses

from pfsync_app.atlas import AtlasClient, AtlasError
from tests.fixtures.atlas import (
    API_KEY,
    API_SECRET,
    BASE_URL,
    LISTINGS_URL,
    PROBLEM_JSON,
    TOKEN_URL,
    USERS_URL,
    WEBHOOKS_URL,
    FakeClock,
    make_client,
    page_body,
    problem,
    token_body,
    user_json,
)

TOKEN_1 = "eyJhbGciOiJSUzI1NiJ9.first-token-7f3c9a"
TOKEN_2 = "eyJhbGciOiJSUzI1NiJ9.second-token-b81e42"
WEBHOOK_SECRET = "whsec-pF3Z9km2L7xQhR8dBnAeTfYu"
SECRETS = (API_SECRET, TOKEN_1, TOKEN_2, WEBHOOK_SECRET)


def assert_no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_the_clients_repr_shows_the_base_url_and_at_most_the_keys_last_four_characters():
    client = AtlasClient(BASE_URL, API_KEY, API_SECRET)

    text = repr(client)

    assert text == f"AtlasClient(base_url='{BASE_URL}', api_key='...{API_KEY[-4:]}')"
    assert API_KEY[:-4] not in text
    assert_no_secret_in(text + str(vars(client).get("_token")))


def test_no_secret_or_token_in_logs_or_errors_of_a_troubled_run(caplog):
    clock = FakeClock()
    failures: list[AtlasError] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        token = api.post(TOKEN_URL, json=token_body(TOKEN_1))
        client = make_client(clock, max_attempts=3)
        with caplog.at_level(logging.DEBUG):
            client.authenticate()
            token.body = json.dumps(token_body(TOKEN_2))
            # A 401 renews the token; the API then echoes credentials in its errors.
            api.get(
                USERS_URL, status=401, json=problem("Unauthorized", "expired", "AUTHENTICATION")
            )
            api.get(USERS_URL, json=page_body([user_json()], key="data"))
            echo = problem("Bad Request", f"bad token {TOKEN_2} for {API_SECRET}", "X")
            api.get(LISTINGS_URL, status=400, json=echo, content_type=PROBLEM_JSON)
            api.post(WEBHOOKS_URL, status=422, body=f"secret {WEBHOOK_SECRET} rejected")
            api.get(f"{BASE_URL}/v1/locations", body=requests.ConnectionError(f"reset {TOKEN_2}"))
            list(client.iter_user_pages())
            for action in (
                lambda: list(client.iter_listing_pages()),
                lambda: client.subscribe_webhook("user.created", "https://s.test/", WEBHOOK_SECRET),
                lambda: list(client.search_locations("Marina")),
            ):
                with pytest.raises(AtlasError) as caught:
                    action()
                failures.append(caught.value)

    # The run did go through renewals, errors and retries worth logging.
    assert token.call_count == 2
    assert len(caplog.records) >= 3
    assert_no_secret_in("\n".join(record.getMessage() for record in caplog.records))
    for failure in failures:
        assert_no_secret_in(exception_text(failure))
    assert "***" in str(failures[0])


def test_rejected_credentials_do_not_echo_the_secret(caplog):
    clock = FakeClock()
    with responses.RequestsMock() as api:
        api.post(
            TOKEN_URL,
            status=400,
            json=problem("Bad Request", f"apiSecret {API_SECRET} has a bad length", "X"),
            content_type=PROBLEM_JSON,
        )
        with caplog.at_level(logging.DEBUG), pytest.raises(AtlasError) as caught:
            make_client(clock).authenticate()

    assert_no_secret_in(exception_text(caught.value))
    assert_no_secret_in(caplog.text)
