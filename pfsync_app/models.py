"""pfsync's models: unmanaged maps of the host's tables, and pfsync's own bookkeeping.

The host tables (areas, users, properties, images) belong to the host site:
pfsync maps them with ``managed = False`` models built from the column map
(``hostmap``: PFSYNC_HOST and PFSYNC_TABLES) and never changes their structure.
Its own tables (runs, report entries, image checksums, listing cursors, the
facts a host has no column for, webhook events, run locks) come from pfsync's
own migrations.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from pfsync_app.conf import DEFAULT_TABLES
from pfsync_app.hostmap import FIELDS, REF, HostMap, TableMap, host_map

# ---------------------------------------------------------------------------
# The host's tables (unmanaged: pfsync writes rows, never DDL), built from the map.
# ---------------------------------------------------------------------------


class HostColumnField(models.Field):
    """A host column pfsync writes values into as given: extra columns of the map.

    The writers fit every value to the column's real type first (``writers.fit``),
    so this field only hands values to the database driver.
    """

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        """Values as the driver takes them: datetimes and JSON as the backend wants."""
        if value is None or hasattr(value, "resolve_expression"):
            return value
        if isinstance(value, dict | list):
            from django.core.serializers.json import DjangoJSONEncoder

            return connection.ops.adapt_json_value(value, DjangoJSONEncoder)
        if hasattr(value, "utcoffset"):
            return connection.ops.adapt_datetimefield_value(value)
        if hasattr(value, "isoformat") and hasattr(value, "year"):
            return connection.ops.adapt_datefield_value(value)
        return value


#: Model names and Meta options of the host models. The options the migration state
#: sees are these constants: the table names, columns and ordering a site maps are
#: set on ``_meta`` after the class is made, so ``makemigrations`` never sees the map.
_HOST_MODELS = {
    "area": ("Area", {"ordering": ["name"]}),
    "user": ("Agent", {"verbose_name": "agent"}),
    "property": ("Property", {"verbose_name_plural": "properties"}),
    "image": ("PropertyImage", {"ordering": ["property_id", "position", "id"]}),
}
_REFERENCED = {"user": "Agent", "area": "Area", "property": "Property"}


def _str_area(self: Any) -> str:
    return getattr(self, "name", "") or f"Area {self.pk}"


def _str_agent(self: Any) -> str:
    full = f"{getattr(self, 'first_name', '')} {getattr(self, 'last_name', '')}".strip()
    return full or getattr(self, "username", "") or getattr(self, "email", "") or f"User {self.pk}"


def _str_property(self: Any) -> str:
    return getattr(self, "title", "") or getattr(self, "pf_id", "") or f"Property {self.pk}"


def _str_image(self: Any) -> str:
    return self.image


_STR = {"area": _str_area, "user": _str_agent, "property": _str_property, "image": _str_image}
_DOCS = {
    "area": "The host's area; linked to a Property Finder location by pf_location_id.",
    "user": "The host's user table (its AUTH_USER_MODEL, or its agents table), seen as agents.",
    "property": "The host's property row; linked to a Property Finder listing by its pf_id.",
    "image": "One image of a property; ``image`` is a name in Django's default storage.",
}


def extra_field_name(column: str) -> str:
    """The model attribute of a host column the map fills from the API record."""
    return f"extra_{column}"


def _build_host_model(table: TableMap) -> type[models.Model]:
    """The unmanaged model of one host table: a field for each column the map names."""
    name, options = _HOST_MODELS[table.key]
    meta = type(
        "Meta",
        (),
        {"managed": False, "db_table": DEFAULT_TABLES[table.key], **options},
    )
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": _DOCS[table.key],
        "__str__": _STR[table.key],
        "Meta": meta,
    }
    for host in FIELDS[table.key]:
        column = table.column(host.name)
        if column is None:
            continue
        if host.kind == REF:
            related = {"related_name": "images"} if table.key == "image" else {}
            attrs[host.name] = models.ForeignKey(
                _REFERENCED[host.to],
                null=host.name != "property",
                blank=True,
                on_delete=models.DO_NOTHING,
                db_constraint=False,
                db_column=column,
                **related,
            )
        else:
            built = host.build()
            built.db_column = column
            attrs[host.name] = built
    for column in table.extra:
        attrs[extra_field_name(column)] = HostColumnField(db_column=column, null=True)
    model = type(name, (models.Model,), attrs)
    # What the site maps, out of the migration state's sight (see _HOST_MODELS).
    model._meta.db_table = table.table or DEFAULT_TABLES[table.key]
    if table.key == "image" and "position" not in attrs:
        model._meta.ordering = ["property_id", "id"]
    if table.key == "area" and "name" not in attrs:
        model._meta.ordering = []
    return model


HOST: HostMap = host_map()

Area = _build_host_model(HOST["area"])
Agent = _build_host_model(HOST["user"])
Property = _build_host_model(HOST["property"])
PropertyImage = _build_host_model(HOST["image"])


# ---------------------------------------------------------------------------
# pfsync's own tables.
# ---------------------------------------------------------------------------


class SyncRun(models.Model):
    """One run of pf_sync, pf_repair, pf_check or a webhook batch, with its counters."""

    class Command(models.TextChoices):
        SYNC = "pf_sync", "pf_sync"
        REPAIR = "pf_repair", "pf_repair"
        CHECK = "pf_check", "pf_check"
        WEBHOOKS = "pf_webhooks", "pf_webhooks"
        AREAS = "pf_areas", "pf_areas"

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FINISHED_WITH_ERRORS = "finished_with_errors", "finished with errors"
        FAILED = "failed", "failed"
        INTERRUPTED = "interrupted", "interrupted"
        # Not started because another run held the writer lock: neither a success nor a failure.
        SKIPPED = "skipped", "skipped (another run held the lock)"

    command = models.CharField(max_length=32, choices=Command.choices, db_index=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=32, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True, default="")
    message = models.TextField(blank=True, default="")
    # When the alert e-mail about this run was sent (or tried): one e-mail per run at most.
    alerted_at = models.DateTimeField(null=True, blank=True)

    properties_created = models.IntegerField(default=0)
    properties_updated = models.IntegerField(default=0)
    properties_unpublished = models.IntegerField(default=0)
    # Unpublished properties published again because their listing is live again.
    properties_republished = models.IntegerField(default=0)
    images_downloaded = models.IntegerField(default=0)
    images_deactivated = models.IntegerField(default=0)
    images_failed = models.IntegerField(default=0)
    users_created = models.IntegerField(default=0)
    users_updated = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    entries_dropped = models.IntegerField(default=0)

    COUNTERS = (
        "properties_created",
        "properties_updated",
        "properties_unpublished",
        "properties_republished",
        "images_downloaded",
        "images_deactivated",
        "images_failed",
        "users_created",
        "users_updated",
        "errors",
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "run"

    def __str__(self) -> str:
        return f"{self.command} run {self.pk} ({self.get_status_display()})"

    @property
    def duration(self):
        """How long the run took (or has taken so far), as a timedelta."""
        end = self.finished_at or timezone.now()
        return end - self.started_at


class Overview(SyncRun):
    """The admin's overview page ("how did last night go"): a proxy, so it has no table."""

    class Meta:
        proxy = True
        verbose_name = "overview"
        verbose_name_plural = "overview"


class ReportEntry(models.Model):
    """One thing a run did or failed to do: an error, a created or updated object."""

    class Level(models.TextChoices):
        # Sorted so that errors come first when ordered by level.
        ERROR = "error", "error"
        WARNING = "warning", "warning"
        INFO = "info", "info"

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="entries")
    level = models.CharField(max_length=16, choices=Level.choices, db_index=True)
    action = models.CharField(max_length=64)
    pf_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    object_type = models.CharField(max_length=32, blank=True, default="")
    object_id = models.BigIntegerField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    # Why it failed, for grouping: a reason code (``reports.causes``) and, for HTTP, the status.
    reason = models.CharField(max_length=32, blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The URL that failed (an image's, without its query string), when there was one.
    url = models.CharField(max_length=1024, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["level", "id"]
        verbose_name_plural = "report entries"
        indexes = [models.Index(fields=["run", "level", "action"], name="pfsync_entry_run_level")]

    def __str__(self) -> str:
        return f"{self.level}: {self.action} {self.pf_id}".strip()


class ImageFile(models.Model):
    """What pfsync stored for one host image row: the file's size and sha256."""

    image_id = models.BigIntegerField(unique=True)
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=64, blank=True, default="")
    source_url = models.CharField(max_length=1024, blank=True, default="")
    stored_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class ListingState(models.Model):
    """The sync cursor of one listing: what pfsync last wrote, to skip unchanged listings."""

    pf_id = models.CharField(max_length=64, unique=True)
    property_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    pf_updated_at = models.DateTimeField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True, default="")
    location_id = models.IntegerField(null=True, blank=True, db_index=True)
    title = models.CharField(max_length=255, blank=True, default="")
    synced_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.pf_id


class WebhookEvent(models.Model):
    """A webhook event received from Property Finder, stored before it is processed."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROCESSED = "processed", "processed"
        FAILED = "failed", "failed"
        IGNORED = "ignored", "ignored"

    event_id = models.CharField(max_length=128, unique=True)
    event_type = models.CharField(max_length=64, db_index=True)
    entity_type = models.CharField(max_length=32, blank=True, default="")
    entity_id = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.entity_id}".strip()


class RunLock(models.Model):
    """pfsync's writer lock: one row whose lease one pf_sync, pf_repair or pf_areas link holds.

    The lease is taken and renewed in short transactions and timed by the
    database's clock (``writers/lock.py``), so it holds behind a transaction
    pooler as well as on SQLite. Free when ``token`` is empty; never deleted.
    """

    name = models.CharField(max_length=64, unique=True)
    pid = models.IntegerField()
    hostname = models.CharField(max_length=255, blank=True, default="")
    command = models.CharField(max_length=32, blank=True, default="")
    acquired_at = models.DateTimeField(default=timezone.now)
    #: The holder's own random id: only the holder can renew or release its lease.
    token = models.CharField(max_length=32, blank=True, default="")
    #: When the lease runs out unless renewed, by the database's clock.
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} held by pid {self.pid}"


# ---------------------------------------------------------------------------
# What pfsync keeps for a host that has no column for it (see hostmap.KEPT).
# ---------------------------------------------------------------------------


class AgentLink(models.Model):
    """The Property Finder ids of a host user, for a user table without columns for them."""

    agent_id = models.BigIntegerField(unique=True)
    pf_user_id = models.IntegerField(unique=True)
    pf_public_profile_id = models.IntegerField(null=True, blank=True, unique=True)

    def __str__(self) -> str:
        return f"PF user {self.pf_user_id} = host user {self.agent_id}"


class ImageState(models.Model):
    """The facts of a host image row that the host's images table has no column for."""

    image_id = models.BigIntegerField(unique=True)
    property_id = models.BigIntegerField(db_index=True)
    source_url = models.CharField(max_length=1024, blank=True, default="")
    position = models.IntegerField(default=0)
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"image {self.image_id} at {self.position}"


class LocationName(models.Model):
    """A Property Finder location's name, given with pf_areas link when the host has no areas."""

    location_id = models.IntegerField(unique=True)
    name = models.CharField(max_length=255)
    linked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.location_id}: {self.name}"
