"""AtlasClient.get_user: one user by id, for webhook events (``GET /v1/users?id=``)."""

from __future__ import annotations

import pytest
import responses
from responses import matchers

from pfsync_app.atlas import MalformedResponseError
from tests.fixtures.atlas import (
    TOKEN_URL,
    USERS_URL,
    FakeClock,
    make_client,
    page_body,
    token_body,
    user_json,
)


@pytest.fixture
def client():
    with make_client(FakeClock()) as atlas:
        yield atlas


@responses.activate
def test_get_user_asks_for_that_id_with_the_spec_filter_and_returns_the_user(client):
    responses.post(TOKEN_URL, json=token_body())
    wanted = user_json(id=4242)
    call = responses.get(
        USERS_URL,
        match=[matchers.query_param_matcher({"id": "4242", "page": "1", "perPage": "100"})],
        json=page_body([wanted], key="data"),
    )
    user = client.get_user(4242)
    assert user is not None
    assert user.id == 4242
    assert user.email == wanted["email"]
    assert call.call_count == 1


@responses.activate
def test_get_user_returns_none_when_property_finder_has_no_such_user(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.get(USERS_URL, json=page_body([], key="data"))
    assert client.get_user("77") is None


@responses.activate
def test_get_user_ignores_other_users_when_the_filter_is_not_applied(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.get(USERS_URL, json=page_body([user_json(id=1), user_json(id=2)], key="data"))
    user = client.get_user(2)
    assert user is not None
    assert user.id == 2


@responses.activate
def test_get_user_raises_when_the_wanted_user_is_unreadable(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.get(USERS_URL, json=page_body([user_json(id=5, email=["not", "text"])], key="data"))
    with pytest.raises(MalformedResponseError, match="user 5"):
        client.get_user(5)
