"""The realty site's AppConfig: connects its receivers of pfsync's signals."""

from django.apps import AppConfig


class RealtyConfig(AppConfig):
    name = "tests.hosts.realty"
    label = "realty"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tests.hosts.realty import receivers  # noqa: F401  (connects them)
