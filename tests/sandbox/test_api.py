"""The sandbox answers as the Atlas spec says: shapes, parameters, pagination, auth."""

from __future__ import annotations

import http.client

import pytest
import requests

from pfsync_app.sandbox import Sandbox
from tests.fixtures.sandbox import SMALL, SandboxApi, response_validator, spec_validator


def _all_pages(api: SandboxApi, path: str, key: str, **params: object) -> list[dict]:
    items, page = [], 1
    while page:
        body = api.get(path, params={**params, "page": page}).json()
        items += body[key]
        page = body["pagination"]["nextPage"]
    return items


def test_token_response_matches_the_spec(sandbox: Sandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/v1/auth/token",
        json={"apiKey": sandbox.api_key, "apiSecret": sandbox.api_secret},
        timeout=5,
    )
    assert response.status_code == 200
    response_validator("/v1/auth/token", "post", "200").validate(response.json())
    assert response.json()["tokenType"] == "Bearer"
    assert response.json()["expiresIn"] == 1800


def test_default_credentials_have_the_lengths_the_spec_requires(sandbox: Sandbox) -> None:
    spec_validator("#/components/schemas/auth.token.request").validate(
        {"apiKey": sandbox.api_key, "apiSecret": sandbox.api_secret}
    )


def test_users_match_the_spec_and_cover_the_edge_cases(sandbox_api: SandboxApi) -> None:
    response = sandbox_api.get("/v1/users")
    assert response.status_code == 200
    response_validator("/v1/users", "get", "200").validate(response.json())
    users = response.json()["data"]
    assert len(users) == SMALL["users"]
    assert any("publicProfile" not in u for u in users)
    assert any(u["mobile"] is None and u["publicProfile"]["phone"] for u in users)
    assert {u["role"]["baseRoleKey"] for u in users} >= {"admin", "agent"}


def test_listings_match_the_spec_on_every_page(sandbox_api: SandboxApi) -> None:
    validator = response_validator("/v1/listings", "get", "200")
    page = 1
    while page:
        body = sandbox_api.get("/v1/listings", params={"perPage": 5, "page": page}).json()
        validator.validate(body)
        page = body["pagination"]["nextPage"]


def test_listings_cover_studios_rents_sales_and_listings_without_images(
    sandbox: Sandbox, sandbox_api: SandboxApi
) -> None:
    listings = _all_pages(sandbox_api, "/v1/listings", "results")
    assert len(listings) == SMALL["listings"]
    assert any(item.get("bedrooms") == "studio" for item in listings)
    assert "27" in {item.get("bedrooms") for item in listings}
    assert {item["price"]["type"] for item in listings} >= {"sale", "yearly", "monthly"}
    assert any(item["price"].get("onRequest") for item in listings)
    assert any("media" not in item for item in listings)
    assert any(item.get("media") == {"images": []} for item in listings)
    assert any(item["category"] == "commercial" for item in listings)
    assert any(not item["portals"]["propertyfinder"]["isLive"] for item in listings)
    assert all(len(item["id"]) == 26 and item["id"].isalnum() for item in listings)
    assert any(item["title"]["ar"] and item["description"]["ar"] for item in listings)


def test_listings_point_at_known_locations_and_public_profiles(
    sandbox: Sandbox, sandbox_api: SandboxApi
) -> None:
    profiles = {u["publicProfile"]["id"] for u in sandbox.data.users() if "publicProfile" in u}
    locations = {loc["id"] for loc in sandbox.data.locations()}
    for item in _all_pages(sandbox_api, "/v1/listings", "results"):
        assert item["assignedTo"]["id"] in profiles
        assert item["location"]["id"] in locations


def test_pagination_walks_every_listing_once_in_api_order(
    sandbox: Sandbox, sandbox_api: SandboxApi
) -> None:
    first = sandbox_api.get("/v1/listings", params={"perPage": 5}).json()["pagination"]
    assert first == {
        "page": 1,
        "perPage": 5,
        "total": 12,
        "totalPages": 3,
        "nextPage": 2,
        "prevPage": None,
    }
    ids = [item["id"] for item in _all_pages(sandbox_api, "/v1/listings", "results", perPage=5)]
    assert ids == [item["id"] for item in sandbox.data.listings()]


def test_a_page_after_the_last_is_empty(sandbox_api: SandboxApi) -> None:
    body = sandbox_api.get("/v1/listings", params={"page": 9, "perPage": 5}).json()
    assert body["results"] == []
    assert body["pagination"]["nextPage"] is None


def test_filter_ids_returns_those_listings_in_api_order(
    sandbox: Sandbox, sandbox_api: SandboxApi
) -> None:
    ids = [item["id"] for item in sandbox.data.listings()]
    wanted = [ids[7], ids[2], "01UNKNOWNUNKNOWNUNKNOWNZZZ"]
    body = sandbox_api.get("/v1/listings", params={"filter[ids]": ",".join(wanted)}).json()
    assert [item["id"] for item in body["results"]] == [ids[7], ids[2]]
    assert body["pagination"]["total"] == 2


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"perPage": 101}, "/perPage"),
        ({"perPage": 0}, "/perPage"),
        ({"page": 0}, "/page"),
        ({"page": "two"}, "/page"),
    ],
)
def test_bad_paging_parameters_answer_400_problem_json(
    sandbox_api: SandboxApi, params: dict, pointer: str
) -> None:
    response = sandbox_api.get("/v1/listings", params=params)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    response_validator("/v1/listings", "get", "400").validate(response.json())
    assert response.json()["type"] == "SCHEMA_VALIDATION"
    assert response.json()["status"] == 400
    assert response.json()["errors"][0]["pointer"] == pointer


@pytest.mark.parametrize("params", [{}, {"search": "M"}, {"search": " "}])
def test_locations_need_a_search_of_two_characters(sandbox_api: SandboxApi, params: dict) -> None:
    response = sandbox_api.get("/v1/locations", params=params)
    assert response.status_code == 400
    response_validator("/v1/locations", "get", "400").validate(response.json())
    assert "search" in response.json()["detail"]


def test_locations_match_the_spec_and_carry_their_tree(sandbox_api: SandboxApi) -> None:
    response = sandbox_api.get("/v1/locations", params={"search": "marina"})
    assert response.status_code == 200
    response_validator("/v1/locations", "get", "200").validate(response.json())
    by_name = {loc["name"]: loc for loc in response.json()["data"]}
    assert by_name["Dubai Marina"]["id"] == 50
    assert [node["name"] for node in by_name["Marina Gate 1"]["tree"]] == [
        "Dubai",
        "Dubai Marina",
        "Marina Gate 1",
    ]


def test_locations_filter_by_id_type_and_parent(sandbox_api: SandboxApi) -> None:
    def ids(**params: str) -> list[int]:
        body = sandbox_api.get("/v1/locations", params={"search": "maple", **params}).json()
        return [loc["id"] for loc in body["data"]]

    assert sorted(ids()) == [207, 208]
    assert ids(**{"filter[parent]": "Dubai, Dubai Hills Estate"}) == [207]
    assert ids(**{"filter[id]": "208"}) == [208]
    assert ids(**{"filter[type]": "TOWER"}) == []


def test_locations_answer_in_arabic_when_asked(sandbox_api: SandboxApi) -> None:
    body = sandbox_api.get(
        "/v1/locations",
        params={"search": "Dubai Marina", "filter[type]": "COMMUNITY"},
        headers={"Accept-Language": "ar"},
    )
    assert body.status_code == 200
    assert body.json()["data"][0]["name"] == "دبي مارينا"


def test_a_wrong_secret_answers_401(sandbox: Sandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/v1/auth/token",
        json={"apiKey": sandbox.api_key, "apiSecret": "x" * 32},
        timeout=5,
    )
    assert response.status_code == 401
    response_validator("/v1/auth/token", "post", "401").validate(response.json())
    assert sandbox.api_secret not in response.text


def test_a_token_request_without_a_secret_answers_400(sandbox: Sandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/v1/auth/token", json={"apiKey": sandbox.api_key}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["pointer"] == "/apiSecret"


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_missing_or_unknown_tokens_answer_401(sandbox: Sandbox, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{sandbox.url}/v1/listings", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["type"] == "AUTHENTICATION"


def test_a_token_past_its_ttl_answers_401() -> None:
    now = [1000.0]
    with Sandbox(users=1, listings=1, token_ttl=1, clock=lambda: now[0]) as sb:
        api = SandboxApi(sb)
        assert api.get("/v1/users").status_code == 200
        now[0] += 1.5
        response = api.get("/v1/users")
        assert response.status_code == 401
        assert response.json()["detail"] == "access token expired"


def test_expired_tokens_answer_401_and_a_new_token_works(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.expire_tokens()
    assert sandbox_api.get("/v1/users").status_code == 401
    sandbox_api.session.headers["Authorization"] = f"Bearer {sandbox_api.token()}"
    assert sandbox_api.get("/v1/users").status_code == 200


def test_revoked_credentials_refuse_tokens_and_new_token_requests(
    sandbox_api: SandboxApi,
) -> None:
    sandbox = sandbox_api.sandbox
    sandbox.faults.revoke_credentials()
    assert sandbox_api.get("/v1/users").status_code == 401
    credentials = {"apiKey": sandbox.api_key, "apiSecret": sandbox.api_secret}
    assert sandbox_api.post("/v1/auth/token", json=credentials).status_code == 401
    sandbox.faults.restore_credentials()
    assert sandbox_api.get("/v1/users").status_code == 200


def test_the_rate_limit_answers_429_with_retry_after() -> None:
    now = [0.0]
    with Sandbox(users=1, listings=1, rate_limit=3, clock=lambda: now[0]) as sb:
        api = SandboxApi(sb)
        assert [api.get("/v1/users").status_code for _ in range(4)] == [200, 200, 200, 429]
        limited = api.get("/v1/users")
        assert limited.headers["Retry-After"] == "60"
        response_validator("/v1/users", "get", "429").validate(limited.json())
        now[0] += 61
        assert api.get("/v1/users").status_code == 200


def test_token_requests_are_limited_to_sixty_a_minute_while_rate_limited() -> None:
    with Sandbox(users=1, listings=1, rate_limit=1000, clock=lambda: 0.0) as sb:
        api = SandboxApi(sb)  # the first token
        statuses = [
            api.post(
                "/v1/auth/token", json={"apiKey": sb.api_key, "apiSecret": sb.api_secret}
            ).status_code
            for _ in range(60)
        ]
        assert statuses.count(200) == 59
        assert statuses[-1] == 429


def test_webhook_subscriptions_match_the_spec(sandbox_api: SandboxApi) -> None:
    created = sandbox_api.post(
        "/v1/webhooks",
        json={
            "eventId": "listing.published",
            "callbackUrl": "http://127.0.0.1:9/hook",
            "secret": "s3cret",
        },
    )
    assert created.status_code == 201
    response_validator("/v1/webhooks", "post", "201").validate(created.json())
    assert "secret" not in created.json()
    listed = sandbox_api.get("/v1/webhooks", params={"eventType": "listing.published"})
    response_validator("/v1/webhooks", "get", "200").validate(listed.json())
    assert [w["url"] for w in listed.json()["data"]] == ["http://127.0.0.1:9/hook"]
    assert sandbox_api.delete("/v1/webhooks/listing.published").status_code == 204
    assert sandbox_api.get("/v1/webhooks").json() == {"data": []}
    assert sandbox_api.delete("/v1/webhooks/listing.published").status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"eventId": "listing.published"}, 400),
        ({"eventId": "listing.sold", "callbackUrl": "http://127.0.0.1/x"}, 400),
        ({"eventId": "user.created", "callbackUrl": "http://127.0.0.1/x", "extra": 1}, 400),
        ({"eventId": "user.created", "callbackUrl": "http://127.0.0.1/x", "secret": "x" * 33}, 400),
        ({"eventId": "user.created", "callbackUrl": "https://example.com/hook"}, 422),
    ],
)
def test_bad_webhook_subscriptions_are_refused(
    sandbox_api: SandboxApi, body: dict, status: int
) -> None:
    response = sandbox_api.post("/v1/webhooks", json=body)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"


def test_unknown_paths_answer_404_problem_json(sandbox_api: SandboxApi) -> None:
    response = sandbox_api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["type"] == "NOT_FOUND"


def test_every_request_is_recorded(sandbox_api: SandboxApi) -> None:
    sandbox_api.get("/v1/listings", params={"page": 2, "perPage": 5})
    assert sandbox_api.sandbox.requests[-1] == (
        "GET",
        "/v1/listings",
        {"page": "2", "perPage": "5"},
    )
    assert [r.path for r in sandbox_api.sandbox.requests].count("/v1/auth/token") == 1


def test_keep_alive_serves_many_requests_on_one_connection(sandbox: Sandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/v1/users")
            response = connection.getresponse()
            assert response.status == 401
            assert len(response.read()) == int(response.headers["Content-Length"])
        assert connection.sock is not None
    finally:
        connection.close()


def test_users_filter_by_the_specs_comma_separated_id_list(sandbox_api: SandboxApi) -> None:
    users = sandbox_api.sandbox.data.users()
    wanted = f"{users[0]['id']},{users[2]['id']}"
    body = sandbox_api.get("/v1/users", params={"id": wanted}).json()
    assert [u["id"] for u in body["data"]] == [users[0]["id"], users[2]["id"]]
