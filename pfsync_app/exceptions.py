"""pfsync's own exception: a run that could not run or had to stop (exit status 2)."""


class SyncAborted(Exception):
    """The run could not run or had to stop (exit status 2); the message says why."""
