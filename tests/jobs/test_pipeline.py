"""The page prefetcher: fetches ahead in the background and stops when told."""

import threading

import pytest

from pfsync_app.jobs.pipeline import prefetch


def test_items_arrive_in_order_and_fetching_starts_before_the_first_is_taken():
    started = threading.Event()

    def pages():
        started.set()
        yield from range(5)

    fetched = prefetch(pages(), depth=1)
    assert started.wait(2), "the background fetch did not start on its own"
    assert list(fetched) == [0, 1, 2, 3, 4]
    assert list(fetched) == []


def test_an_error_while_fetching_is_raised_to_the_consumer_after_the_good_items():
    def pages():
        yield 1
        raise ConnectionError("page 2 failed")

    fetched = prefetch(pages())
    assert next(fetched) == 1
    with pytest.raises(ConnectionError, match="page 2 failed"):
        next(fetched)
    assert list(fetched) == []


def test_closing_stops_the_background_thread_even_with_a_full_queue():
    def endless():
        n = 0
        while True:
            n += 1
            yield n

    fetched = prefetch(endless(), depth=1)
    assert next(fetched) == 1
    fetched.close()
    fetched._thread.join(timeout=2)
    assert not fetched._thread.is_alive()
    assert list(fetched) == []
