"""Builds the Atlas client and the image downloader from pfsync's settings."""

from __future__ import annotations

from pfsync_app.atlas import AtlasClient
from pfsync_app.conf import pfsync_settings, setting_named
from pfsync_app.media.download import ImageDownloader


def build_client(concurrency: int | None = None) -> AtlasClient:
    """An Atlas client configured from the PF_API_* settings, its pool sized for the downloads.

    The pool holds a connection per download in flight, at most PF_SYNC_CONCURRENCY's bound
    (256) of them: urllib3 fills a pool of that size up front, and a pool for a billion
    downloads hung pf_sync filling it.
    """
    s = pfsync_settings
    most = int(setting_named("PF_SYNC_CONCURRENCY").maximum)
    downloads = min(concurrency or int(s.PF_SYNC_CONCURRENCY), most)
    return AtlasClient(
        s.PF_API_URL,
        s.PF_API_KEY,
        s.PF_API_SECRET,
        timeout=float(s.PF_API_TIMEOUT),
        pool_size=max(10, downloads + 4),
        requests_per_minute=int(s.PF_API_REQUESTS_PER_MINUTE),
        token_requests_per_minute=int(s.PF_API_TOKEN_REQUESTS_PER_MINUTE),
        max_attempts=int(s.PF_API_MAX_ATTEMPTS),
        max_retry_wait=float(s.PF_API_MAX_RETRY_WAIT),
    )


def build_downloader(client: AtlasClient | None = None) -> ImageDownloader:
    """An image downloader sharing the client's connection pool when there is one."""
    return ImageDownloader(session=client.session if client is not None else None)
