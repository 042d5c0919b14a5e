"""Small pieces shared by pfsync's management commands."""

from __future__ import annotations

from django.core.management.base import CommandError


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1, or one sentence saying what was wrong."""
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"expected a whole number, got {text!r}", returncode=2) from None
    if value < 1:
        raise CommandError(f"expected a number of at least 1, got {value}", returncode=2)
    return value
