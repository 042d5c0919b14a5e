"""pfsync's models: unmanaged maps of the host's tables, and pfsync's own bookkeeping.

The host tables (areas, users, properties, images) belong to the host site:
pfsync maps them with ``managed = False`` models whose table names come from
``PFSYNC_TABLES`` and never changes their structure. Its own tables (runs,
report entries, image checksums, listing cursors, unmapped locations, webhook
events, run locks) come from pfsync's own migrations.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from pfsync_app.conf import table_name

# ---------------------------------------------------------------------------
# The host's tables (unmanaged: pfsync writes rows, never DDL).
# ---------------------------------------------------------------------------


class Area(models.Model):
    """The host's area; linked to a Property Finder location by pf_location_id."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=255)
    pf_location_id = models.IntegerField(null=True, blank=True, unique=True)

    class Meta:
        managed = False
        db_table = table_name("area")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    """The host's user table (its AUTH_USER_MODEL), seen as Property Finder agents."""

    id = models.BigAutoField(primary_key=True)
    password = models.CharField(max_length=128)
    last_login = models.DateTimeField(null=True, blank=True)
    is_superuser = models.BooleanField(default=False)
    username = models.CharField(max_length=150, unique=True)
    first_name = models.CharField(max_length=150, blank=True, default="")
    last_name = models.CharField(max_length=150, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    phone = models.CharField(max_length=32, blank=True, default="")
    role = models.CharField(max_length=32, blank=True, default="")
    pf_user_id = models.IntegerField(null=True, blank=True, unique=True)
    pf_public_profile_id = models.IntegerField(null=True, blank=True, unique=True)

    class Meta:
        managed = False
        db_table = table_name("user")
        verbose_name = "agent"

    def __str__(self) -> str:
        full = f"{self.first_name} {self.last_name}".strip()
        return full or self.username


class Property(models.Model):
    """The host's property row; ``pf_id`` links it to a Property Finder listing."""

    id = models.BigAutoField(primary_key=True)
    pf_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    reference = models.CharField(max_length=64, blank=True, default="")
    user = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False
    )
    area = models.ForeignKey(
        Area, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False
    )
    title = models.CharField(max_length=255, blank=True, default="")
    title_ar = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(blank=True, default="")
    description_ar = models.TextField(blank=True, default="")
    category = models.CharField(max_length=32, blank=True, default="")
    property_type = models.CharField(max_length=32, blank=True, default="")
    status_type = models.CharField(max_length=16, blank=True, default="")
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    price_period = models.CharField(max_length=16, blank=True, default="")
    bedrooms = models.SmallIntegerField(null=True, blank=True)
    bathrooms = models.SmallIntegerField(null=True, blank=True)
    size = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    furnishing = models.CharField(max_length=32, blank=True, default="")
    is_published = models.BooleanField(default=False)
    pf_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = table_name("property")
        verbose_name_plural = "properties"

    def __str__(self) -> str:
        return self.title or self.pf_id or f"Property {self.pk}"


class PropertyImage(models.Model):
    """One image of a property; ``image`` is a name in Django's default storage."""

    id = models.BigAutoField(primary_key=True)
    property = models.ForeignKey(
        Property, on_delete=models.DO_NOTHING, db_constraint=False, related_name="images"
    )
    image = models.CharField(max_length=255)
    source_url = models.CharField(max_length=1024, blank=True, default="")
    position = models.IntegerField(default=0)
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = table_name("image")
        ordering = ["property_id", "position", "id"]

    def __str__(self) -> str:
        return self.image


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
