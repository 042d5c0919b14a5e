"""Run the Atlas sandbox in the foreground: try pfsync before having API keys."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pfsync_app.sandbox import Sandbox


class Command(BaseCommand):
    help = (
        "Serve a fake Property Finder Atlas API and image host on 127.0.0.1, printing "
        "PF_API_URL, PF_API_KEY and PF_API_SECRET first; Ctrl-C stops it."
    )
    # It serves what pfsync would fetch; pfsync's own checks (no API key yet) do not apply.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765, help="Port; 0 picks a free one.")
        parser.add_argument("--users", type=int, default=20, help="Users to generate.")
        parser.add_argument("--listings", type=int, default=200, help="Listings to generate.")
        parser.add_argument("--images-per-listing", type=int, default=5, help="Images a listing.")
        parser.add_argument("--seed", type=int, default=1, help="Same seed, same data.")
        parser.add_argument("--latency-ms", type=float, default=0, help="Delay of API answers.")
        parser.add_argument("--image-latency-ms", type=float, default=0, help="Delay of images.")
        parser.add_argument("--image-bytes", type=int, default=20_000, help="Size of an image.")
        parser.add_argument("--token-ttl", type=float, default=1800, help="Token life, seconds.")
        parser.add_argument(
            "--rate-limit", type=int, default=None, help="API requests a minute before 429."
        )
        parser.add_argument(
            "--fault-rate", type=float, default=0.0, help="Share of API requests that fail."
        )
        parser.add_argument(
            "--image-fault-rate", type=float, default=0.0, help="Share of images that fail."
        )
        parser.add_argument("--api-key", default=None, help="API key to accept (default: seeded).")
        parser.add_argument("--api-secret", default=None, help="API secret to accept.")

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
        except (ValueError, OSError) as exc:
            raise CommandError(f"Cannot start the sandbox: {exc}.") from exc
        self.stdout.write(f"PF_API_URL={sandbox.url}")
        self.stdout.write(f"PF_API_KEY={sandbox.api_key}")
        self.stdout.write(f"PF_API_SECRET={sandbox.api_secret}")
        self.stdout.flush()
        if options["verbosity"] > 0:
            self.stderr.write(
                f"Sandbox serving {options['users']} users and {options['listings']} listings "
                f"at {sandbox.url}; press Ctrl-C to stop.",
                style_func=self.style.SUCCESS,
            )
            self.stderr.flush()
        sandbox.serve_forever()
        if options["verbosity"] > 0:
            self.stderr.write("Sandbox stopped.")
