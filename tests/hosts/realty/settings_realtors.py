"""The realty site keeping its agents in a separate realtors table (no password, no username)."""

from copy import deepcopy

from tests.hosts.realty.settings import *  # noqa: F403
from tests.hosts.realty.settings import PFSYNC_HOST

PFSYNC_HOST = deepcopy(PFSYNC_HOST)
PFSYNC_HOST["user"] = {
    "table": "realty_realtor",
    "auth": False,
    "columns": {"role": None, "pf_user_id": None, "pf_public_profile_id": None},
}
PFSYNC_HOST["property"]["columns"]["user"] = "realtor_id"
PFSYNC_HOST["property"]["filled_by_receivers"] = ["slug", "owner_id"]
del PFSYNC_HOST["property"]["fallback_agent"]
