"""pfsync's URLs; the host mounts them, e.g. ``path("pf/", include("pfsync_app.urls"))``."""

from django.urls import path

from pfsync_app import views

app_name = "pfsync"
urlpatterns = [
    path("webhook/", views.webhook, name="webhook"),
    path("health/", views.health, name="health"),
]
