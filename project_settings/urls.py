"""URLs of the host project: the admin, pfsync's webhook endpoint, and the demo's media.

The demo serves MEDIA_ROOT itself, DEBUG or not, so the admin's thumbnails show when
`manage.py runserver` runs with DEBUG off (Django's ``static()`` helper serves nothing then).
A real site's web server or bucket serves its media; pfsync_app's own URLs never do.
"""

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve


def media_urls() -> list:
    """``MEDIA_URL<path>`` answered from MEDIA_ROOT; none when media lives elsewhere (S3, a CDN)."""
    local = getattr(settings, "MEDIA_STORAGE", "filesystem") == "filesystem"
    prefix = settings.MEDIA_URL.lstrip("/")
    if not local or not prefix or urlsplit(settings.MEDIA_URL).netloc:
        return []
    return [
        re_path(
            rf"^{re.escape(prefix)}(?P<path>.*)$",
            serve,
            {"document_root": settings.MEDIA_ROOT},
        )
    ]


urlpatterns = [
    path("admin/", admin.site.urls),
    path("pf/", include("pfsync_app.urls")),
    *media_urls(),
]
