"""pfsync's AppConfig: registers the system checks."""

from django.apps import AppConfig


class PfsyncConfig(AppConfig):
    name = "pfsync_app"
    label = "pfsync_app"
    verbose_name = "Property Finder sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from pfsync_app import checks  # noqa: F401  (registers the checks)
