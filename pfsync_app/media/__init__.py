"""Media: image URLs in, verified files in Django's storage out.

Knows URLs, HTTP and the storage API, nothing of listings or the ORM.

- ``policy``: which URLs may be fetched (https on public addresses; SSRF).
- ``download``: ``ImageDownloader(session=...).download(url) -> StoredImage``, or
  ``ImageDownloadError`` (``reason``, ``status``, ``permanent``); nothing is left behind.
- ``files``: what storage holds (``StoredFiles``), whether it can be written, reading back.
"""
