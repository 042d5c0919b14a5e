"""pf_sandbox: prints the three settings lines, serves, and stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fault_rate": 2.0}, "fault_rate must be between 0 and 1"),
        ({"listings": -1}, "listings must be 0 or more"),
        ({"port": 70000}, "port must be between 0 and 65535"),
    ],
)
def test_bad_options_raise_a_command_error(options: dict, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("pf_sandbox", **options)


def test_a_port_in_use_raises_a_command_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command("pf_sandbox", port=port)


@pytest.mark.slow
def test_the_command_prints_settings_serves_and_stops_on_sigterm() -> None:
    command = [sys.executable, "manage.py", "pf_sandbox", "--port", "0", "--listings", "7"]
    process = subprocess.Popen(
        [*command, "--users", "2", "--seed", "5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert set(lines) == {"PF_API_URL", "PF_API_KEY", "PF_API_SECRET"}
        assert lines["PF_API_URL"].startswith("http://127.0.0.1:")
        assert not lines["PF_API_URL"].endswith(":0")
        assert "press Ctrl-C to stop" in process.stderr.readline()
        token = requests.post(
            f"{lines['PF_API_URL']}/v1/auth/token",
            json={"apiKey": lines["PF_API_KEY"], "apiSecret": lines["PF_API_SECRET"]},
            timeout=5,
        ).json()["accessToken"]
        listings = requests.get(
            f"{lines['PF_API_URL']}/v1/listings",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        assert listings["pagination"]["total"] == 7
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
