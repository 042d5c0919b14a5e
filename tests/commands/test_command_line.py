"""Every pfsync command's command line: --help says what each option takes, a refusal exits 2.

A refused option or argument is one sentence on stderr and exit status 2, as
``manage.py`` runs it (status 1 means "finished, with item errors"). --help
gives each option's meaning, unit and default, and each subcommand one line in
its parent's --help and as its own description.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import socket
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError

from pfsync_app.management.base import PfsyncCommand
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import PROJECT_DIR
from tests.fixtures.sandbox import SMALL
from tests.jobs.test_bad_input import manage_py

PFSYNC_COMMANDS = sorted(
    name for name, app in get_commands().items() if app == "pfsync_app" and name.startswith("pf_")
)
# Django's own options (--settings, --verbosity...): Django words their help.
DJANGO_OPTIONS = {
    action.dest for action in BaseCommand().create_parser("manage.py", "base")._actions
} | {"skip_checks"}
NO_DEFAULT = (None, False, [], argparse.SUPPRESS)


def parsers(name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """The command's parser and each subcommand's, named as typed."""
    command = load_command_class("pfsync_app", name)
    found = [(name, command.create_parser("manage.py", name))]
    for title, parser in found:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found.extend((f"{title} {sub}", p) for sub, p in action.choices.items())
    return found


def test_the_walk_below_sees_every_command_and_subcommand():
    named = [title for name in PFSYNC_COMMANDS for title, _ in parsers(name)]
    assert {"pf_sync", "pf_sandbox", "pf_report", "pf_check", "pf_repair", "pf_schema"} <= set(
        named
    )
    assert {"pf_areas automap", "pf_areas link", "pf_webhooks unsubscribe"} <= set(named)


@pytest.mark.parametrize("name", PFSYNC_COMMANDS)
def test_every_option_has_help_with_its_default_and_every_subcommand_a_line(name):
    gaps = []
    for title, parser in parsers(name):
        if title != name and not parser.description:
            gaps.append(f"{title}: no description in its own --help")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.dest in DJANGO_OPTIONS:
                continue
            what = action.option_strings[-1] if action.option_strings else action.metavar
            if isinstance(action, argparse._SubParsersAction):
                lines = {choice.dest: choice.help for choice in action._choices_actions}
                gaps += [f"{title} {sub}: no line" for sub in action.choices if not lines.get(sub)]
            if not action.help or action.help == argparse.SUPPRESS:
                gaps.append(f"{title} {what}: no help")
                continue
            default = action.default
            gives = "%(default)s" in action.help or str(default) in action.help
            if default not in NO_DEFAULT and not gives:
                gaps.append(f"{title} {what}: help does not give the default {default!r}")
    assert gaps == []


def test_pf_areas_says_ambiguous_candidates_only_for_automap():
    for title, parser in parsers("pf_areas"):
        verbosity = next(a for a in parser._actions if a.dest == "verbosity").help
        assert ("ambiguous" in verbosity) == (title == "pf_areas automap"), title


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["pf_report", "--days", "0"], "argument --days: expected 1 to 3650 days, got 0"),
        (["pf_report", "--days", "week"], "argument --days: expected a whole number of days"),
        (["pf_report", "--run", "abc"], "argument --run: expected a whole number, got 'abc'"),
        (["pf_report", "--run", "1", "--check"], "argument --check: not allowed with"),
        (["pf_sync", "--limit", "0"], "argument --limit: expected a number of at least 1"),
        (["pf_sync", "--concurrency", "x"], "argument --concurrency: expected a whole number"),
        (["pf_repair", "--concurrency", "1000000000"], "--concurrency: expected a number of at"),
        (["pf_repair", "--limit", "-1"], "argument --limit: expected a number of at least 1"),
        (["pf_check", "--property", " "], "argument --property: expected a pf_id"),
        (["pf_sync", "--listing", "ab\x01\x1bc"], "got 'ab\\x01\\x1bc': it holds a control"),
        (["pf_sync", "--listing", "\udcff\udcfe"], "bytes that are not text"),
        (["pf_schema", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["pf_areas", "search"], "the following arguments are required: text"),
        (["pf_areas", "relink"], "argument ACTION: invalid choice: 'relink'"),
        (["pf_webhooks", "unsubscribe", "listing"], "argument EVENT_TYPE: invalid choice"),
        (["pf_webhooks", "process", "--limit", "0"], "argument --limit: expected a number of"),
        (["pf_webhooks", "process", "--limit", "1" + "0" * 30], "at most 2147483647, got one of"),
        (["pf_sync", "--limit", "9" * 5000], "at most 2147483647, got one of 5000 digits"),
        (["pf_schema", "--database", "nope"], "argument --database: no database 'nope' in"),
        (["pf_sandbox", "--port", "70000"], "argument --port: expected a port from 0 to 65535"),
        (["pf_sandbox", "--users", "-1"], "argument --users: expected a number of at least 0"),
        (["pf_sandbox", "--fault-rate", "2"], "argument --fault-rate: expected a share from 0"),
        (["pf_sandbox", "--token-ttl", "0"], "argument --token-ttl: expected more than 0 sec"),
        # Refused in handle, after argparse: a CommandError, still status 2 and one sentence.
        (["pf_sync", "--listing", "X", "--only", "users"], "--listing cannot be combined"),
        (["pf_areas", "link", "abc", "1"], "location id must be a whole number, got 'abc'."),
        (["pf_areas", "link", "0", "--create", "X"], "location id must be a positive number"),
    ],
)
def test_a_refused_option_or_argument_is_one_sentence_and_status_2(args, says):
    result = manage_py(*args)

    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(rf"(manage\.py {args[0]}( [a-z]+)?: error|CommandError): ", last), last
    assert says in last
    assert "Traceback" not in result.stderr


class Refuses(PfsyncCommand):
    """A command whose handle refuses its input with Django's default status."""

    requires_system_checks: list[str] = []

    def handle(self, *args, **options):
        raise CommandError("that value is refused.")


def test_a_command_error_raised_with_status_1_leaves_a_pfsync_command_with_2():
    command = Refuses(stdout=StringIO(), stderr=StringIO())
    with pytest.raises(SystemExit) as info:
        command.run_from_argv(["manage.py", "refuses"])
    assert info.value.code == 2
    assert command.stderr._out.getvalue().strip() == "CommandError: that value is refused."


@pytest.mark.slow
def test_pf_sandbox_on_a_busy_port_exits_2_and_suggests_port_0():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = manage_py("pf_sandbox", "--port", str(port))

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"CommandError: cannot start the sandbox: cannot listen on 127.0.0.1:{port}: "
        f"{os.strerror(errno.EADDRINUSE)} (another program uses that port; "
        "--port 0 picks any free port)."
    )


class Says(PfsyncCommand):
    """A command that logs one INFO and one WARNING line; ``run`` says whether it records a run."""

    requires_system_checks: list[str] = []
    run = False

    def records_run(self, options):
        return self.run

    def handle(self, *args, **options):
        logging.getLogger("pfsync.test").info("an info line")
        logging.getLogger("pfsync.test").warning("a warning line")


@pytest.fixture
def console():
    """A handler for pfsync's loggers, at INFO, as a host sets one (the test makes it stderr)."""
    handler = logging.StreamHandler(StringIO())
    pfsync = logging.getLogger("pfsync")
    level = pfsync.level
    pfsync.addHandler(handler)
    pfsync.setLevel(logging.INFO)
    yield handler
    pfsync.removeHandler(handler)
    pfsync.setLevel(level)


@pytest.mark.parametrize(
    ("run", "verbosity", "info_shown"), [(False, 1, False), (False, 2, True), (True, 1, True)]
)
def test_a_command_that_records_no_run_logs_info_on_the_console_only_with_v2(
    console, monkeypatch, run, verbosity, info_shown
):
    # Here, not in the fixture: pytest's capture sets sys.stderr again for the test's call.
    monkeypatch.setattr(sys, "stderr", console.stream)
    command = Says(stdout=StringIO(), stderr=StringIO())
    command.run = run
    command.execute(verbosity=verbosity, no_color=True, force_color=False, skip_checks=True)

    err = console.stream.getvalue()
    assert "a warning line" in err
    assert ("an info line" in err) == info_shown
    assert console.filters == []


@pytest.mark.slow
def test_pf_webhooks_list_does_not_print_the_token_line_unless_v2():
    with Sandbox(**SMALL) as sb:
        env = {
            **os.environ,
            "PF_API_URL": sb.url,
            "PF_API_KEY": sb.api_key,
            "PF_API_SECRET": sb.api_secret,
            "LOG_LEVEL": "info",
        }
        quiet, loud = (
            subprocess.run(
                [sys.executable, str(PROJECT_DIR / "manage.py"), "pf_webhooks", "list", *more],
                cwd=PROJECT_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for more in ([], ["-v", "2"])
        )

    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "No event subscriptions.\n", "")
    assert loud.returncode == 0
    assert "INFO pfsync.atlas [run -] Obtained an Atlas access token" in loud.stderr
