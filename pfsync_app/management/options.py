"""Options shared by pfsync's management commands: one definition of each, one message.

argparse names the option and exits with status 2 for a value these types refuse.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def pf_id(text: str) -> str:
    """argparse type: a listing's pf_id, stripped; blank is refused."""
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("expected a pf_id, got nothing")
    return value


def add_json(parser: argparse.ArgumentParser, what: str = "report") -> None:
    """--json: a machine-readable ``what`` on stdout instead of the text."""
    parser.add_argument(
        "--json", action="store_true", help=f"Print a machine-readable {what} on stdout."
    )


def add_property(parser: argparse.ArgumentParser, verb: str) -> None:
    """--property PF_ID: only the property with this pf_id (``verb``: Check, Repair...)."""
    parser.add_argument(
        "--property", metavar="PF_ID", type=pf_id, help=f"{verb} only the property with this pf_id."
    )


def add_concurrency(parser: argparse.ArgumentParser) -> None:
    """--concurrency N: image downloads at once, instead of PF_SYNC_CONCURRENCY."""
    parser.add_argument(
        "--concurrency", type=positive_int, help="Image downloads at once (PF_SYNC_CONCURRENCY)."
    )


def add_dry_run(parser: argparse.ArgumentParser, what: str) -> None:
    """--dry-run: say what would be done (``what``), write and download nothing."""
    parser.add_argument("--dry-run", action="store_true", help=what)
