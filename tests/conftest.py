"""Shared fixtures. Fixture modules live in tests/fixtures/ and are registered here."""

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# Hypothesis profiles: "default" is what scripts/test runs (bounded to about a minute,
# the same examples every time); "long" runs by hand, many more and longer sequences:
#   scripts/test --hypothesis-profile=long tests/jobs/test_convergence_model.py
# Each step of the stateful tests is a whole sync: no deadline, and slow data is fine.
_UNBOUNDED = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
hypothesis_settings.register_profile(
    "default", max_examples=10, stateful_step_count=15, derandomize=True, **_UNBOUNDED
)
hypothesis_settings.register_profile(
    "long", max_examples=60, stateful_step_count=40, database=None, **_UNBOUNDED
)
hypothesis_settings.load_profile("default")

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
