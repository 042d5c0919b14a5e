"""The numeric settings' bounds hold where the values are used: the image retries' waits.

IMAGE_DOWNLOAD_MAX_RETRIES=1000000000 with a delay of 0 once fetched an image 1025 times
and logged "retrying in 4611686018427387904.0 s": past 2**1024 tenacity's doubling
overflows a float and it falls back to its own maximum wait. At the registry's bounds every
wait is finite, none is longer than a minute (or the delay itself, when longer), and the
one logged is the one slept.
"""

import logging
import socket

import pytest
import requests
from django.core.files.storage import FileSystemStorage

from pfsync_app.conf import setting_named
from pfsync_app.media.download import LONGEST_WAIT, ImageDownloader, ImageDownloadError

RETRIES = setting_named("IMAGE_DOWNLOAD_MAX_RETRIES")
DELAY = setting_named("IMAGE_DOWNLOAD_RETRY_DELAY")


@pytest.mark.parametrize("delay", [DELAY.minimum, 0.5, DELAY.maximum])
def test_at_the_most_retries_every_wait_is_finite_and_logged_as_slept(tmp_path, caplog, delay):
    with socket.socket() as probe:  # a port nothing listens on: every attempt is refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/a.png"
    sleeps: list[float] = []
    caplog.set_level(logging.INFO, logger="pfsync.media")
    with requests.Session() as session:
        session.trust_env = False
        downloader = ImageDownloader(
            session,
            storage=FileSystemStorage(location=tmp_path),
            allow_private_hosts=True,
            timeout=3.0,
            retry_delay=float(delay),
            max_retries=RETRIES.maximum,
            sleep=sleeps.append,
        )
        with pytest.raises(ImageDownloadError, match=f"after {RETRIES.maximum} attempts"):
            downloader.download(url)

    longest = max(delay, LONGEST_WAIT)
    assert sleeps == [min(delay * 2**n, longest) for n in range(RETRIES.maximum - 1)]
    logged = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [line.rsplit("retrying in ", 1)[1] for line in logged] == [
        f"{wait:.1f} s" for wait in sleeps
    ]
