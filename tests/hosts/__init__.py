"""Host projects other than the bundled one, each with its own settings and migrations.

pfsync's models are built from settings when Django starts, so a test runs such
a host in its own process (``tests/fixtures/hosts.py``).
"""
