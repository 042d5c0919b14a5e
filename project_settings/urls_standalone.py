"""URLs when pfsync runs alone (PFSYNC_STANDALONE=true): only the webhook endpoint."""

from django.urls import include, path

urlpatterns = [path("pf/", include("pfsync_app.urls"))]
