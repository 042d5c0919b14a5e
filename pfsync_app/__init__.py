"""pfsync: keeps a Django site in step with Property Finder's Enterprise API."""

__version__ = "0.1.0"
