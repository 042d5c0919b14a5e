"""Webhook subscriptions: which URL gets which events, with which signing secret.

The rules live here, not in the command: the URL must be http(s), the secret
at most MAX_SECRET_CHARS characters (Property Finder's limit), and unsigned
subscriptions are refused unless PF_WEBHOOK_ALLOW_UNSIGNED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from pfsync_app.atlas import AtlasClient, AtlasError
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import WebhookSetupError
from pfsync_app.jobs.webhooks import EVENT_TYPES
from pfsync_app.words import plural

#: Property Finder's limit on a subscription's signing secret.
MAX_SECRET_CHARS = 32


@dataclass
class Subscribed:
    """What ``subscribe`` did: the event types subscribed now, and those already subscribed."""

    url: str
    signed: bool
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


def subscribe(
    client: AtlasClient,
    url: str,
    events: Iterable[str] | None = None,
    secret: str | None = None,
    *,
    done: Callable[[str, bool], None] = lambda event_type, added: None,
    warn: Callable[[str], None] = lambda text: None,
) -> Subscribed:
    """Subscribe ``url`` to each event type (default all of EVENT_TYPES) not subscribed yet.

    The secret defaults to PF_WEBHOOK_SECRET; unsigned subscriptions are refused
    unless PF_WEBHOOK_ALLOW_UNSIGNED. ``warn(text)`` is called before anything is
    subscribed when the secret differs from this site's; ``done(event_type, added)``
    as each type is handled. Raises WebhookSetupError (one sentence) for a bad URL or
    secret, or when Property Finder refuses one (naming those subscribed so far).
    """
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise WebhookSetupError(f"--url {url!r} is not an http(s) URL") from None
    configured = pfsync_settings.PF_WEBHOOK_SECRET or ""
    secret = configured if secret is None else secret
    if len(secret) > MAX_SECRET_CHARS:
        raise WebhookSetupError(
            f"the webhook secret has {plural(len(secret), 'character')}; Property Finder allows at "
            f"most {MAX_SECRET_CHARS} (shorten PF_WEBHOOK_SECRET or --secret)"
        )
    if not secret and not pfsync_settings.PF_WEBHOOK_ALLOW_UNSIGNED:
        raise WebhookSetupError(
            "no signing secret: give the PF_WEBHOOK_SECRET setting or variable a value (or "
            "pass --secret), since unsigned events are refused unless the "
            "PF_WEBHOOK_ALLOW_UNSIGNED setting is true"
        )
    result = Subscribed(url=url, signed=bool(secret))
    if secret and configured and secret != configured:
        warn(
            "--secret differs from PF_WEBHOOK_SECRET: this site will refuse the events "
            "unless the URL is another site's."
        )
    existing = {(w.event_id, w.url) for w in client.list_webhooks()}
    for event_type in dict.fromkeys(events or EVENT_TYPES):
        if (event_type, url) in existing:
            result.already.append(event_type)
            done(event_type, False)
            continue
        try:
            client.subscribe_webhook(event_type, url, secret=secret or None)
        except AtlasError as exc:
            so_far = f" (subscribed so far: {', '.join(result.added)})" if result.added else ""
            raise WebhookSetupError(f"subscribing {event_type} failed: {exc}{so_far}") from None
        result.added.append(event_type)
        done(event_type, True)
    return result
