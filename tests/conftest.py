"""Shared fixtures. Fixture modules live in tests/fixtures/ and are registered here."""

import pytest


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes media into its own folder, never into the project's media/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REPORT_FILE = ""
