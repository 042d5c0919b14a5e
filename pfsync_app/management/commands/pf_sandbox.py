"""Run the Atlas sandbox in the foreground: try pfsync before having API keys."""

from __future__ import annotations

import errno
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pfsync_app.management.options import (
    count,
    milliseconds,
    port,
    positive_int,
    seconds,
    share,
)
from pfsync_app.sandbox import Sandbox
from pfsync_app.words import plural


class Command(BaseCommand):
    help = (
        "Serve a fake Property Finder Atlas API and image host on 127.0.0.1, printing "
        "PF_API_URL, PF_API_KEY and PF_API_SECRET first; Ctrl-C stops it."
    )
    # It serves what pfsync would fetch; pfsync's own checks (no API key yet) do not apply.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=port,
            default=8765,
            help="Port on 127.0.0.1 (default %(default)s; 0 picks any free port).",
        )
        parser.add_argument(
            "--users", type=count, default=20, help="Users to generate (default %(default)s)."
        )
        parser.add_argument(
            "--listings",
            type=count,
            default=200,
            help="Listings to generate (default %(default)s).",
        )
        parser.add_argument(
            "--images-per-listing",
            type=count,
            default=5,
            metavar="N",
            help="Images each listing has (default %(default)s).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=1,
            help="Seed of the generated data: same seed, same data (default %(default)s).",
        )
        parser.add_argument(
            "--latency-ms",
            type=milliseconds,
            default=0,
            metavar="MS",
            help="Delay of each API answer, in milliseconds (default %(default)s).",
        )
        parser.add_argument(
            "--image-latency-ms",
            type=milliseconds,
            default=0,
            metavar="MS",
            help="Delay of each image answer, in milliseconds (default %(default)s).",
        )
        parser.add_argument(
            "--image-bytes",
            type=positive_int,
            default=20_000,
            metavar="BYTES",
            help="Size of each image, in bytes (default %(default)s).",
        )
        parser.add_argument(
            "--token-ttl",
            type=seconds,
            default=1800,
            metavar="SECONDS",
            help="How long an access token lives, in seconds (default %(default)s).",
        )
        parser.add_argument(
            "--rate-limit",
            type=positive_int,
            default=None,
            metavar="N",
            help="API requests a minute before answering 429 (default: no limit).",
        )
        parser.add_argument(
            "--fault-rate",
            type=share,
            default=0.0,
            metavar="SHARE",
            help="Share of API requests that fail, 0 to 1 (default %(default)s).",
        )
        parser.add_argument(
            "--image-fault-rate",
            type=share,
            default=0.0,
            metavar="SHARE",
            help="Share of image requests that fail, 0 to 1 (default %(default)s).",
        )
        parser.add_argument(
            "--api-key",
            default=None,
            help="API key to accept (default: one derived from --seed, printed at start).",
        )
        parser.add_argument(
            "--api-secret",
            default=None,
            help="API secret to accept (default: one derived from --seed, printed at start).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            sandbox = Sandbox(
                users=options["users"],
                listings=options["listings"],
                images_per_listing=options["images_per_listing"],
                seed=options["seed"],
                port=options["port"],
                latency_ms=options["latency_ms"],
                image_latency_ms=options["image_latency_ms"],
                image_bytes=options["image_bytes"],
                token_ttl=options["token_ttl"],
                rate_limit=options["rate_limit"],
                fault_rate=options["fault_rate"],
                image_fault_rate=options["image_fault_rate"],
                api_key=options["api_key"],
                api_secret=options["api_secret"],
            )
        except ValueError as exc:  # call_command(...) with a value argparse would refuse
            raise CommandError(f"cannot start the sandbox: {exc}.", returncode=2) from None
        except OSError as exc:
            hint = ""
            if getattr(exc.__cause__, "errno", None) == errno.EADDRINUSE:
                hint = " (another program uses that port; --port 0 picks any free port)"
            raise CommandError(f"cannot start the sandbox: {exc}{hint}.", returncode=2) from None
        self.stdout.write(f"PF_API_URL={sandbox.url}")
        self.stdout.write(f"PF_API_KEY={sandbox.api_key}")
        self.stdout.write(f"PF_API_SECRET={sandbox.api_secret}")
        self.stdout.flush()
        if options["verbosity"] > 0:
            self.stderr.write(
                f"Sandbox serving {plural(options['users'], 'user')} and "
                f"{plural(options['listings'], 'listing')} "
                f"at {sandbox.url}; press Ctrl-C to stop.",
                style_func=self.style.SUCCESS,
            )
            self.stderr.flush()
        sandbox.serve_forever()
        if options["verbosity"] > 0:
            self.stderr.write("Sandbox stopped.")
