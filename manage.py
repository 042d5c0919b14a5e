#!/usr/bin/env python
"""Django's command-line utility for the pfsync host project."""

import os
import sys


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project_settings.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A settings mistake is the operator's, not a bug: one sentence, status 2.
        sys.stderr.write(f"pfsync: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
