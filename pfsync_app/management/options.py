"""Options shared by pfsync's management commands: one definition of each, one message.

argparse names the option and exits with status 2 for a value these types refuse.
"""

from __future__ import annotations

import argparse
import unicodedata
from typing import Any

from pfsync_app.words import plural

#: The largest whole number an option takes: what a 32-bit database column holds. No count
#: pfsync works with (listings, events, days, downloads) comes near it.
LARGEST_WHOLE = 2**31 - 1


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (and at most ``LARGEST_WHOLE``)."""
    return _whole(text, 1)


def count(text: str) -> int:
    """argparse type: a whole number of at least 0 (and at most ``LARGEST_WHOLE``)."""
    return _whole(text, 0)


def _whole(text: str, least: int) -> int:
    """``text`` as a whole number from ``least`` to ``LARGEST_WHOLE``, else argparse's refusal."""
    digits = text.strip().lstrip("+")
    if digits.isdigit() and len(digits) > len(str(LARGEST_WHOLE)):
        # Checked first: Python refuses to read a number of more than 4300 digits at all.
        raise argparse.ArgumentTypeError(
            f"expected a number of at most {LARGEST_WHOLE}, "
            f"got one of {plural(len(digits), 'digit')}"
        )
    try:
        value = int(text)
    except ValueError:
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise argparse.ArgumentTypeError(f"expected a whole number, got {shown!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a number of at least {least}, got {value}")
    if value > LARGEST_WHOLE:
        raise argparse.ArgumentTypeError(
            f"expected a number of at most {LARGEST_WHOLE}, got {value}"
        )
    return value


def port(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: any free port)."""
    value = count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def milliseconds(text: str) -> float:
    """argparse type: a delay in milliseconds, 0 or more."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 ms or more, got {text}")
    return value


def seconds(text: str) -> float:
    """argparse type: a duration in seconds, more than 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {text}")
    return value


def share(text: str) -> float:
    """argparse type: a share from 0 to 1 (0.1: one in ten)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1, got {text}")
    return value


def pf_id(text: str) -> str:
    """argparse type: a listing's pf_id, stripped; blank is refused.

    So is one that no listing can have: a control character, or bytes that are not
    text in the terminal's encoding (Python keeps those as lone surrogates). The
    refusal shows the id with such characters escaped, so what is printed is what
    was given.
    """
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("expected a pf_id, got nothing")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        shown = ascii(value if len(value) <= 40 else f"{value[:37]}...")
        raise argparse.ArgumentTypeError(
            f"expected a pf_id, got {shown}: "
            "it holds a control character or bytes that are not text"
        )
    return value


def action_parser(actions: Any, name: str, *, help: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line ``help`` is its line in the parent's --help and its own."""
    return actions.add_parser(name, help=help, description=help)


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
        "--concurrency",
        type=concurrency,
        metavar="N",
        help=f"Download N images at once (default: PF_SYNC_CONCURRENCY, {_default_concurrency()}).",
    )


def concurrency(text: str) -> int:
    """argparse type: image downloads at once, within PF_SYNC_CONCURRENCY's bounds."""
    from pfsync_app.conf import setting_named

    value = positive_int(text)
    bounds = setting_named("PF_SYNC_CONCURRENCY")
    if bounds.maximum is not None and value > bounds.maximum:
        why = f" ({bounds.why_maximum})" if bounds.why_maximum else ""
        raise argparse.ArgumentTypeError(
            f"expected a number of at most {bounds.maximum}{why}, got {value}"
        )
    return value


def _default_concurrency() -> str:
    """PF_SYNC_CONCURRENCY's value in effect, for --help."""
    from pfsync_app.conf import pfsync_settings

    try:
        return str(pfsync_settings.PF_SYNC_CONCURRENCY)
    except Exception:  # a wrong setting is the command's sentence, not --help's
        return "16 unless set"


def add_dry_run(parser: argparse.ArgumentParser, what: str) -> None:
    """--dry-run: say what would be done (``what``), write and download nothing."""
    parser.add_argument("--dry-run", action="store_true", help=what)


def database_alias(text: str) -> str:
    """A ``--database`` value: a key of DATABASES, else argparse's one-line refusal (exit 2)."""
    from django.db import connections

    if text in connections.settings:
        return text
    known = ", ".join(sorted(connections.settings)) or "none"
    raise argparse.ArgumentTypeError(f"no database {text!r} in DATABASES (known: {known})")


def add_verbosity(action: argparse.ArgumentParser, shows: str = "") -> None:
    """-v on a subcommand, so that "pf_areas unmapped -v 2" works as "pf_areas -v 2 unmapped".

    ``shows``: what level 2 adds, for the help ("also shows pfsync's INFO log lines").
    """
    action.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=[0, 1, 2, 3],
        default=argparse.SUPPRESS,
        help=f"Verbosity level, 0 to 3 (default 1){'; 2 ' + shows if shows else ''}.",
    )
