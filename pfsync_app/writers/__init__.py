"""Writers: every read and write of the host's tables, one transaction per user or listing.

Writers know the ORM and transactions, nothing of HTTP. They only INSERT and
UPDATE: no row is ever deleted, an image gone from a listing is deactivated, a
listing gone from Property Finder is unpublished.

- ``columns``: ``host_table(key)``, one host table through the column map: read, fit,
  compare and write by host column; the site's defaults; sending pfsync's signals.
- ``fit``: the one rule that fits a value to its real column (or refuses its row).
- ``rows``: ``read_rows``/``read_all``: host rows read so one value Django cannot convert
  fails its listing or user (an ``UnreadableCell`` naming table, row, column), not the page.
- ``users``: ``save_user``, ``unchanged_users``, ``find_agent``.
- ``listings``: ``save_listing``, ``property_fields``, ``unpublish``, ``Lookups``.
- ``images``: ``plan_images`` (which images need a download), the images rows, checksums.
- ``areas``: linking locations to areas, or to names on a site without areas.
- ``lock``: ``writer_lock``: one writing run at a time per database.
"""
