"""The host app: stands in for the real site's own tables (see HOST_SCHEMA.md)."""

from django.apps import AppConfig


class HostConfig(AppConfig):
    name = "project_settings.host"
    label = "host"
    verbose_name = "Host site"
    default_auto_field = "django.db.models.BigAutoField"
