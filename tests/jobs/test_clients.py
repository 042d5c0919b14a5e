"""The Atlas client built from settings: its connection pool follows the downloads, bounded."""

from pfsync_app.conf import setting_named
from pfsync_app.jobs.clients import build_client


def pool_size(client):
    return client.session.get_adapter("https://atlas.example.test")._pool_maxsize


def test_the_pool_holds_a_connection_per_download_and_four_for_the_api(settings):
    settings.PF_SYNC_CONCURRENCY = 16
    with build_client() as client:
        assert pool_size(client) == 20
    with build_client(concurrency=40) as client:
        assert pool_size(client) == 44


def test_a_concurrency_beyond_the_settings_bound_gets_a_pool_of_the_bound():
    # A billion once hung pf_sync filling the pool; --concurrency is not the registry's to check.
    most = setting_named("PF_SYNC_CONCURRENCY").maximum
    with build_client(concurrency=1_000_000_000) as client:
        assert pool_size(client) == most + 4
