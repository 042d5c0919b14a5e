"""pfsync in the Django admin: runs and their report entries, synced properties, webhooks.

Everything here is read-only: runs, entries and webhook events are history,
and properties belong to pf_sync (an edit would be overwritten by the next run).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator

from pfsync_app.models import Agent, Property, PropertyImage, ReportEntry, SyncRun, WebhookEvent
from pfsync_app.reports.summary import format_duration, local_datetime_text


def _has(model: Any, name: str) -> bool:
    """Whether pfsync's model of a host table has field ``name`` (the site maps a column to it)."""
    return any(f.name == name for f in model._meta.get_fields())


def _present(model: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The names of ``names`` that are fields of ``model`` (or not fields at all: admin methods)."""
    fields = {f.name for f in model._meta.get_fields()}
    host = {"pf_id", "title", "area", "price", "is_published", "reference", "position"}
    host |= {"image", "source_url", "is_active"}
    return tuple(n for n in names if n in fields or n not in host)


# Errors first, then warnings, then info (the level names sort otherwise).
LEVEL_RANK = Case(
    When(level=ReportEntry.Level.ERROR, then=Value(0)),
    When(level=ReportEntry.Level.WARNING, then=Value(1)),
    When(level=ReportEntry.Level.INFO, then=Value(2)),
    default=Value(3),
    output_field=IntegerField(),
)

_STATUS_LOOK = {
    SyncRun.Status.RUNNING: ("#2a6ebb", "▶"),
    SyncRun.Status.SUCCEEDED: ("#2e7d32", "✓"),
    SyncRun.Status.FINISHED_WITH_ERRORS: ("#b26a00", "⚠"),
    SyncRun.Status.FAILED: ("#ba2121", "✗"),
    SyncRun.Status.INTERRUPTED: ("#666666", "■"),
}
_LEVEL_COLOUR = {
    ReportEntry.Level.ERROR: "#ba2121",
    ReportEntry.Level.WARNING: "#b26a00",
    ReportEntry.Level.INFO: "#666666",
}


class ReadOnlyAdminMixin:
    """Viewable, never added, changed or deleted from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def entries_url(run_id: int, level: str | None = None) -> str:
    """The report entry list of one run, optionally of one level only."""
    query = {"run": run_id}
    if level:
        query["level__exact"] = level
    return reverse("admin:pfsync_app_reportentry_changelist") + "?" + urlencode(query)


def _level_badge(level: str) -> str:
    return format_html(
        '<strong style="color:{}">{}</strong>', _LEVEL_COLOUR.get(level, "inherit"), level
    )


# ---------------------------------------------------------------------------
# Runs and report entries
# ---------------------------------------------------------------------------


class ReportEntryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReportEntry
    fk_name = "run"
    fields = ("level_badge", "action", "pf_id", "object_type", "object_id", "message", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "report entries (errors first)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportEntry]:
        return (
            super()
            .get_queryset(request)
            .annotate(level_rank=LEVEL_RANK)
            .order_by("level_rank", "id")
        )

    @admin.display(description="level")
    def level_badge(self, entry: ReportEntry) -> str:
        return _level_badge(entry.level)

    @admin.display(description="at")
    def created(self, entry: ReportEntry) -> str:
        return local_datetime_text(entry.created_at)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "started",
        "command",
        "status_badge",
        "duration_text",
        "created",
        "updated",
        "unpublished",
        "images_downloaded_",
        "images_deactivated_",
        "images_failed_",
        "users_created_",
        "users_updated_",
        "errors_",
    )
    list_display_links = ("started",)
    list_filter = ("command", "status", "started_at")
    date_hierarchy = "started_at"
    search_fields = ("message",)
    ordering = ("-started_at", "-id")
    list_per_page = 50
    inlines = (ReportEntryInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "command",
                    "status_badge",
                    "started",
                    "finished",
                    "duration_text",
                    "message",
                    "options",
                    "pid",
                    "hostname",
                    "entries_by_level",
                    "entries_dropped",
                )
            },
        ),
        (
            "Counters",
            {
                "fields": (
                    ("properties_created", "properties_updated", "properties_unpublished"),
                    ("images_downloaded", "images_deactivated", "images_failed"),
                    ("users_created", "users_updated", "errors"),
                )
            },
        ),
    )
    readonly_fields = (
        "status_badge",
        "started",
        "finished",
        "duration_text",
        "entries_by_level",
    )

    @admin.display(description="started", ordering="started_at")
    def started(self, run: SyncRun) -> str:
        return local_datetime_text(run.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, run: SyncRun) -> str:
        return local_datetime_text(run.finished_at) or "—"

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: SyncRun) -> str:
        colour, icon = _STATUS_LOOK.get(run.status, ("inherit", ""))
        return format_html(
            '<span style="color:{}; white-space:nowrap">{} {}</span>',
            colour,
            icon,
            run.get_status_display(),
        )

    @admin.display(description="duration")
    def duration_text(self, run: SyncRun) -> str:
        text = format_duration(run.duration)
        return f"{text} so far" if run.status == SyncRun.Status.RUNNING else text

    @admin.display(description="entries")
    def entries_by_level(self, run: SyncRun) -> str:
        counts = run.entries.aggregate(
            total=Count("id"),
            **{level: Count("id", filter=Q(level=level)) for level in ReportEntry.Level.values},
        )
        links = [
            (entries_url(run.pk, level), f"{label} ({counts[level]})")
            for level, label in (
                (ReportEntry.Level.ERROR, "errors"),
                (ReportEntry.Level.WARNING, "warnings"),
                (ReportEntry.Level.INFO, "info"),
            )
        ]
        links.append((entries_url(run.pk), f"all ({counts['total']})"))
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    # Short column titles for the counters, sortable.
    @admin.display(description="created", ordering="properties_created")
    def created(self, run: SyncRun) -> int:
        return run.properties_created

    @admin.display(description="updated", ordering="properties_updated")
    def updated(self, run: SyncRun) -> int:
        return run.properties_updated

    @admin.display(description="unpublished", ordering="properties_unpublished")
    def unpublished(self, run: SyncRun) -> int:
        return run.properties_unpublished

    @admin.display(description="images downloaded", ordering="images_downloaded")
    def images_downloaded_(self, run: SyncRun) -> int:
        return run.images_downloaded

    @admin.display(description="deactivated", ordering="images_deactivated")
    def images_deactivated_(self, run: SyncRun) -> int:
        return run.images_deactivated

    @admin.display(description="failed", ordering="images_failed")
    def images_failed_(self, run: SyncRun) -> int:
        return run.images_failed

    @admin.display(description="users created", ordering="users_created")
    def users_created_(self, run: SyncRun) -> int:
        return run.users_created

    @admin.display(description="users updated", ordering="users_updated")
    def users_updated_(self, run: SyncRun) -> int:
        return run.users_updated

    @admin.display(description="errors", ordering="errors")
    def errors_(self, run: SyncRun) -> str:
        if run.errors:
            return format_html('<strong style="color:#ba2121">{}</strong>', run.errors)
        return "0"


class RunListFilter(admin.SimpleListFilter):
    """Entries of one run: the latest runs are offered, any run id is accepted."""

    title = "run"
    parameter_name = "run"
    recent = 20

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        runs = list(SyncRun.objects.order_by("-started_at", "-id")[: self.recent])
        selected = self._run_id()
        if selected is not None and all(run.pk != selected for run in runs):
            runs.extend(SyncRun.objects.filter(pk=selected))
        return [
            (str(run.pk), f"#{run.pk} {run.command} {local_datetime_text(run.started_at)}")
            for run in runs
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        selected = self._run_id()
        if self.value() is None:
            return queryset
        if selected is None:
            return queryset.none()
        return queryset.filter(run_id=selected)

    def _run_id(self) -> int | None:
        value = self.value()
        if value is None or not str(value).isdigit():
            return None
        return int(value)


@admin.register(ReportEntry)
class ReportEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "run_link",
        "level_badge",
        "action",
        "pf_id",
        "object_type",
        "object_id",
        "message",
        "created",
    )
    list_filter = ("level", RunListFilter, "action")
    search_fields = ("pf_id", "message", "action")
    list_select_related = ("run",)
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportEntry]:
        # Annotated before ordering: ModelAdmin.get_queryset would order by level_rank too early.
        return ReportEntry.objects.annotate(level_rank=LEVEL_RANK).order_by(
            *self.get_ordering(request)
        )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        return ["level_rank", "-run_id", "id"]

    @admin.display(description="run", ordering="run_id")
    def run_link(self, entry: ReportEntry) -> str:
        url = reverse("admin:pfsync_app_syncrun_change", args=[entry.run_id])
        return format_html('<a href="{}">#{} {}</a>', url, entry.run_id, entry.run.command)

    @admin.display(description="level", ordering="level_rank")
    def level_badge(self, entry: ReportEntry) -> str:
        return _level_badge(entry.level)

    @admin.display(description="at", ordering="created_at")
    def created(self, entry: ReportEntry) -> str:
        return local_datetime_text(entry.created_at)


# ---------------------------------------------------------------------------
# Synced properties and their images
# ---------------------------------------------------------------------------


def image_file_state(name: str) -> str:
    """A thumbnail of the stored file, or a red mark when the file is not in the storage."""
    if not name:
        return format_html('<span style="color:#ba2121">{}</span>', "✗ no file name")
    try:
        exists = default_storage.exists(name)
    except (SuspiciousFileOperation, OSError, ValueError) as exc:
        return format_html(
            '<span style="color:#ba2121">✗ invalid file name ({})</span>', type(exc).__name__
        )
    if not exists:
        return format_html('<span style="color:#ba2121">{}</span>', "✗ file missing")
    return format_html(
        '<a href="{0}"><img src="{0}" height="80" alt="{1}" loading="lazy"></a>',
        default_storage.url(name),
        name,
    )


class PropertyImageInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PropertyImage
    fk_name = "property"
    # The columns the site has (an images table may hold only the file).
    fields = _present(PropertyImage, ("thumbnail", "position", "image", "source_url", "is_active"))
    readonly_fields = fields
    ordering = ("position", "id") if _has(PropertyImage, "position") else ("id",)
    extra = 0
    can_delete = False

    @admin.display(description="file")
    def thumbnail(self, image: PropertyImage) -> str:
        return image_file_state(image.image)


@admin.register(Property)
class PropertyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Only the columns the site maps (PFSYNC_HOST): a site's property table may lack some.
    list_display = _present(
        Property, ("pf_id", "title", "area", "agent", "price", "published", "pf_updated")
    )
    list_filter = _present(Property, ("is_published", "area"))
    search_fields = _present(Property, ("pf_id", "title", "reference"))
    list_select_related = tuple(n for n in ("area", "user") if _has(Property, n))
    ordering = ("-pf_updated_at", "-id") if _has(Property, "pf_updated_at") else ("-id",)
    inlines = (PropertyImageInline,)

    @admin.display(
        description="agent",
        ordering="user__first_name"
        if _has(Property, "user") and _has(Agent, "first_name")
        else None,
    )
    def agent(self, prop: Property) -> str:
        user = getattr(prop, "user", None) if getattr(prop, "user_id", None) else None
        return str(user) if user else "—"

    @admin.display(
        description="published",
        boolean=True,
        ordering="is_published" if _has(Property, "is_published") else None,
    )
    def published(self, prop: Property) -> bool | None:
        return getattr(prop, "is_published", None)

    @admin.display(
        description="PF updated",
        ordering="pf_updated_at" if _has(Property, "pf_updated_at") else None,
    )
    def pf_updated(self, prop: Property) -> str:
        return local_datetime_text(getattr(prop, "pf_updated_at", None)) or "—"


# ---------------------------------------------------------------------------
# Webhook events
# ---------------------------------------------------------------------------


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "event_type",
        "entity_type",
        "entity_id",
        "status",
        "received",
        "processed",
        "attempts",
        "short_error",
    )
    list_filter = ("status", "event_type")
    search_fields = ("event_id", "entity_id", "last_error")
    ordering = ("-received_at", "-id")

    @admin.display(description="received", ordering="received_at")
    def received(self, event: WebhookEvent) -> str:
        return local_datetime_text(event.received_at)

    @admin.display(description="processed", ordering="processed_at")
    def processed(self, event: WebhookEvent) -> str:
        return local_datetime_text(event.processed_at) or "—"

    @admin.display(description="last error")
    def short_error(self, event: WebhookEvent) -> str:
        lines = event.last_error.strip().splitlines()
        return Truncator(lines[0]).chars(120) if lines else ""
