"""Fixtures of the fault tests that run pfsync in real processes, each on its own database."""

from __future__ import annotations

import pytest

from tests.fixtures.faults import ProcessDatabase, process_database


@pytest.fixture(scope="module")
def template(request, tmp_path_factory):
    """A migrated database the tests of one module clone (made once per module)."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    db = ProcessDatabase(tmp_path_factory.mktemp(f"{module}-template"))
    yield db
    db.drop()


@pytest.fixture
def db(template, tmp_path):
    """A fresh migrated database for one test, cloned from the module's template."""
    with process_database(tmp_path, template) as fresh:
        yield fresh
