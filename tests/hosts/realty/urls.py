"""The realty site's URLs: its admin and pfsync's webhook endpoint."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("pf/", include("pfsync_app.urls")),
]
