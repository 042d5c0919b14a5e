"""Fixtures of the Atlas client's unit tests: a fake clock and a mocked API that grants tokens."""

from __future__ import annotations

import pytest
import responses

from tests.fixtures.atlas import TOKEN_URL, FakeClock, token_body


@pytest.fixture
def clock():
    """A clock the test moves by hand (no real sleeping)."""
    return FakeClock()


@pytest.fixture
def api():
    """The API mocked with ``responses``: the token endpoint answers, the test adds the rest."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=token_body())
        yield mock
