"""Reports: what every run did, in pfsync's tables, the daily report file and log lines.

- ``recorder``: ``RunRecorder``, the one way a run is recorded and ended.
- ``report_file``: the old service's daily report file.
- ``summary``: per-day totals, dates and durations for people.
- ``logs``: the run id on log lines, and ``redact`` for everything stored or logged.

Nothing is imported here: the logging configuration imports ``reports.logs``
before Django's apps are ready.
"""
