"""Shared fixtures. Fixture modules live in tests/fixtures/ and are registered here."""

import pytest

pytest_plugins = ["tests.fixtures.sandbox", "tests.fixtures.s3", "tests.fixtures.images"]


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path):
    """Every test writes media into its own folder and never waits long for retries."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REPORT_FILE = ""
    settings.PF_API_MAX_RETRY_WAIT = 1.0
    settings.PF_API_MAX_ATTEMPTS = 4
    settings.IMAGE_DOWNLOAD_RETRY_DELAY = 0.01
    settings.IMAGE_DOWNLOAD_TIMEOUT = 5.0
    # Logging in as admin hashes a password; the real hasher costs seconds per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
