"""pf_sync shows a progress bar on a terminal and plain timestamped lines under cron."""

import io
import re

from pfsync_app.jobs.pipeline import Progress
from pfsync_app.management.progress import LogProgress, TerminalProgress, progress_for
from tests.fixtures.faults import ProcessDatabase, manage


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_bars_and_cron_gets_log_lines_and_verbosity_0_gets_nothing():
    assert isinstance(progress_for(Terminal(), 1), TerminalProgress)
    assert isinstance(progress_for(io.StringIO(), 1), LogProgress)
    assert type(progress_for(Terminal(), 0)) is Progress


def test_the_bar_counts_listings_and_grows_its_image_total():
    out = Terminal()
    progress = TerminalProgress(out)
    progress.stage("listings")
    progress.total("listings", 3)
    progress.stage("images", 0)
    progress.total("images", 4)
    progress.total("images", 2)
    progress.advance("listings", 3)
    progress.advance("images", 6)
    assert progress.bars["images"].total == 6
    progress.close()
    text = out.getvalue()
    assert "listings" in text and "3/3" in text and "6/6" in text


def test_log_lines_are_timestamped_and_say_how_far_each_stage_got():
    out = io.StringIO()
    progress = LogProgress(out, interval=0)
    progress.stage("listings", 10)
    progress.advance("listings", 4)
    progress.close()
    lines = out.getvalue().splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines)
    assert lines[0].endswith("listings: starting")
    assert lines[-1].endswith("listings: 4/10")


def test_one_runs_log_and_progress_lines_share_one_timestamp_format(tmp_path, sandbox):
    db = ProcessDatabase(tmp_path)
    try:
        # A refused image gives a warning record between the progress lines.
        result = manage(
            db, "pf_sync", sb=sandbox, LOG_LEVEL="info", PF_MEDIA_ALLOW_PRIVATE_HOSTS="false"
        )
    finally:
        db.drop()
    lines = result.stderr.splitlines()
    assert any(" WARNING pfsync.media " in line for line in lines), result.stderr
    assert any(line.endswith("listings: starting") for line in lines), result.stderr
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^,\d]")
    assert [line for line in lines if not stamp.match(line)] == []
