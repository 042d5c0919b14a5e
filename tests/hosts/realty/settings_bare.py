"""The realty site with a map that lacks its defaults and its fallback agent: check must say so."""

from copy import deepcopy

from tests.hosts.realty.settings import *  # noqa: F403
from tests.hosts.realty.settings import PFSYNC_HOST

PFSYNC_HOST = deepcopy(PFSYNC_HOST)
for table in PFSYNC_HOST.values():
    if table:
        table.pop("defaults", None)
PFSYNC_HOST["property"].pop("fallback_agent")
