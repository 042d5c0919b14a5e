"""Jobs: each pfsync command's work, wiring the stages (atlas, mapping, media, writers, reports).

- ``sync``: pf_sync. ``check``: pf_check. ``repair``: pf_repair.
- ``webhooks``: processing stored webhook events. ``areas``: pf_areas.
- ``pipeline``: fetching ahead in a thread, and progress callbacks.
- ``clients``: the Atlas client and the image downloader built from settings.
"""
