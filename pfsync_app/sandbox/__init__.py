"""A fake Property Finder Atlas API and image host on 127.0.0.1, for the demo, tests and benchmarks.

    from pfsync_app.sandbox import Sandbox
    with Sandbox(users=5, listings=30, images_per_listing=2, seed=1) as sb:
        sb.url, sb.api_key, sb.api_secret
        sb.data.update_listing(listing_id, **{"price.amounts.sale": 1_250_000})
        sb.faults.add("/v1/listings", "status", status=502)

Knows nothing of Django: ``pf_sandbox`` is a thin command around it.
"""

from pfsync_app.sandbox.faults import Faults, ScriptedFault
from pfsync_app.sandbox.server import RequestRecord, Sandbox
from pfsync_app.sandbox.store import REMOVE, SandboxData
from pfsync_app.sandbox.webhooks import Delivery, Subscription, signature

__all__ = [
    "REMOVE",
    "Delivery",
    "Faults",
    "RequestRecord",
    "Sandbox",
    "SandboxData",
    "ScriptedFault",
    "Subscription",
    "signature",
]
