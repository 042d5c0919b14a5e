"""Signals for the site's own code: before and after pfsync writes a property, a user or an image.

Each *before* signal carries the values about to be written, keyed by host
column (``values``, a dict a receiver may change or complete: that is how a site
fills a NOT NULL column pfsync knows nothing of, such as a slug or a thumbnail
name). Each *after* signal carries the row's id, whether it was created, the
changed columns (``name -> (before, after)``) and the API record. Both are sent
inside the row's transaction: a receiver's writes are atomic with the row, and
a receiver that raises fails that one record (a report entry), never the run.
No signal is sent on a dry run.

The sender is pfsync's model of the host table (``pfsync_app.models.Property``,
``Agent``, ``PropertyImage``). Arguments:

- ``before_property_save``: ``values``, ``created``, ``property_id`` (None when
  created), ``listing`` (``atlas.records.Listing``);
- ``after_property_save``: ``property_id``, ``created``, ``changed``, ``listing``;
- ``before_user_save`` / ``after_user_save``: the same with ``agent_id`` and
  ``user`` (``atlas.records.User``);
- ``before_image_save`` / ``after_image_save``: the same with ``image_id``,
  ``property_id``, ``image`` (``mapping.ImageValues``: position, source URL,
  size) and ``listing``; sent for an image row pf_sync creates, moves,
  downloads again or deactivates (pf_repair's repairs send none).

README.md ("Plugging into your schema") shows receivers for the common cases.
"""

from __future__ import annotations

from django.dispatch import Signal

before_property_save = Signal()
after_property_save = Signal()
before_user_save = Signal()
after_user_save = Signal()
before_image_save = Signal()
after_image_save = Signal()
