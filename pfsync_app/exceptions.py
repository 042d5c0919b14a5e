"""pfsync's own exceptions: a run that could not run or had to stop (exit status 2)."""


class SyncAborted(Exception):
    """The run could not run or had to stop (exit status 2); the message says why."""


class WriterBusy(SyncAborted):
    """Another pf_sync or pf_repair holds the writer lock; the message names it."""
