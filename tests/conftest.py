"""Shared fixtures. Fixture modules live in tests/fixtures/ and are registered here."""

import os

import pytest
from hypothesis import Phase
from hypothesis import settings as hypothesis_settings

# Property-based tests run in scripts/test beside everything else: bounded, no per-example
# deadline (an example syncs through the sandbox and the database, whose pace varies), and
# reproducible from the printed seed. HYPOTHESIS_PROFILE picks another registered profile.
hypothesis_settings.register_profile("default", deadline=None, print_blob=True)
# Looking for failures: many more examples, not shrunk (minutes per failure when they sync).
hypothesis_settings.register_profile(
    "explore",
    parent=hypothesis_settings.get_profile("default"),
    max_examples=500,
    phases=list(Phase)[:4],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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
