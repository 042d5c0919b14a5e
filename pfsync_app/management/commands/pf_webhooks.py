"""pf_webhooks: manage Property Finder event subscriptions and process stored events."""

from __future__ import annotations

import sys

from django.core.management.base import CommandError, CommandParser

from pfsync_app.atlas import AtlasClient, AtlasError
from pfsync_app.atlas.errors import ApiError, CredentialsMissing
from pfsync_app.jobs.base import atlas_failure
from pfsync_app.jobs.subscriptions import subscribe
from pfsync_app.jobs.webhooks import EVENT_TYPES, process_pending
from pfsync_app.management.base import PfsyncCommand
from pfsync_app.management.options import action_parser, add_verbosity, positive_int
from pfsync_app.words import plural


class Command(PfsyncCommand):
    help = (
        "Property Finder webhooks: list, subscribe or unsubscribe events, "
        "or process the stored events still pending."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action",
            metavar="ACTION",
            required=True,
            help="What to do (each has its own --help):",
        )
        listing = action_parser(
            actions, "list", help="List the event subscriptions of this API key."
        )
        subscribe = action_parser(actions, "subscribe", help="Subscribe a URL to events.")
        subscribe.add_argument(
            "--url", required=True, help="Where events go, e.g. https://example.com/pf/webhook/."
        )
        subscribe.add_argument(
            "--event",
            action="append",
            choices=EVENT_TYPES,
            metavar="TYPE",
            help=f"An event type (repeatable); default all of: {', '.join(EVENT_TYPES)}.",
        )
        subscribe.add_argument(
            "--secret", help="Signing secret (at most 32 characters); default PF_WEBHOOK_SECRET."
        )
        unsubscribe = action_parser(
            actions, "unsubscribe", help="Delete every subscription of these event types."
        )
        unsubscribe.add_argument(
            "event_types",
            nargs="+",
            choices=EVENT_TYPES,
            metavar="EVENT_TYPE",
            help=f"An event type whose subscriptions to delete, one of: {', '.join(EVENT_TYPES)}.",
        )
        process = action_parser(
            actions, "process", help="Process stored events that are still pending (oldest first)."
        )
        process.add_argument(
            "--limit",
            type=positive_int,
            metavar="N",
            help="Process at most N events (default: all).",
        )
        for action in (listing, subscribe, unsubscribe, process):
            add_verbosity(action, "also shows pfsync's INFO log lines")

    def records_run(self, options: dict) -> bool:
        """Processing events records a run; list, subscribe and unsubscribe do not."""
        return options.get("action") == "process"

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "process":
            self.process_events(options["limit"])
            return
        from pfsync_app.jobs.clients import build_client

        try:
            client = build_client()
        except ValueError as exc:
            raise CommandError(f"cannot reach Property Finder: {exc}", returncode=2) from None
        try:
            if action == "list":
                self.list_subscriptions(client)
            elif action == "subscribe":
                self.subscribe_url(client, options["url"], options["event"], options["secret"])
            else:
                self.unsubscribe_events(client, options["event_types"])
        except CredentialsMissing as exc:
            raise atlas_failure(exc, "Property Finder API") from None
        except AtlasError as exc:
            raise CommandError(f"pf_webhooks {action} failed: {exc}", returncode=2) from None
        finally:
            client.close()

    def list_subscriptions(self, client: AtlasClient) -> None:
        """Print each subscription: event type, URL, creation time."""
        webhooks = client.list_webhooks()
        if not webhooks:
            self.stdout.write("No event subscriptions.")
            return
        for webhook in sorted(webhooks, key=lambda w: (w.event_id, w.url or "")):
            created = webhook.created_at.isoformat() if webhook.created_at else ""
            self.stdout.write(f"{webhook.event_id:<22}{webhook.url or ''}  {created}".rstrip())

    def subscribe_url(
        self, client: AtlasClient, url: str, events: list[str] | None, secret: str | None
    ) -> None:
        """Subscribe ``url`` to each event type it is not subscribed to yet."""

        def done(event_type: str, added: bool) -> None:
            if added:
                self.stdout.write(self.style.SUCCESS(f"{event_type:<22}subscribed"))
            else:
                self.stdout.write(f"{event_type:<22}already subscribed")

        result = subscribe(client, url, events, secret, done=done, warn=self.warn)
        signed = "signed" if result.signed else "unsigned"
        self.stdout.write(
            f"{plural(len(result.added), 'subscription')} added for {url} ({signed})."
        )

    def warn(self, text: str) -> None:
        """A warning on stderr, before any subscription is made."""
        self.stderr.write(self.style.WARNING(text))

    def unsubscribe_events(self, client: AtlasClient, event_types: list[str]) -> None:
        """Delete the subscriptions of each event type; none to delete is not an error.

        Removing is idempotent, as ``subscribe`` is ("already subscribed"): Atlas's
        404 for an event type with no subscription is the state asked for, so a
        teardown script can run twice and still exit 0.
        """
        for event_type in dict.fromkeys(event_types):
            try:
                client.unsubscribe_webhook(event_type)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self.stdout.write(
                    f"there is no subscription to {event_type}: nothing to unsubscribe"
                )
                continue
            self.stdout.write(self.style.SUCCESS(f"{event_type:<22}unsubscribed"))

    def process_events(self, limit: int | None) -> None:
        """Process pending events; exit status 1 when some failed."""
        summary = process_pending(limit)
        if not summary.total:
            self.stdout.write("No pending webhook events.")
            return
        style = self.style.WARNING if summary.exit_code else self.style.SUCCESS
        self.stdout.write(style(f"Webhook events (run {summary.run_id}): {summary.text()}."))
        for problem in summary.problems:
            self.stdout.write(f"  {problem}")
        if summary.exit_code:
            sys.exit(summary.exit_code)
