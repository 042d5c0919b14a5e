"""pfsync in the Django admin: the overview, runs and their entries, properties, webhook events.

Everything here is read-only: runs, entries and webhook events are history,
and properties belong to pf_sync (an edit would be overwritten by the next run).
The overview is registered as the model admin of a proxy (``Overview``), so it
is the first item under "Property Finder sync" on any site's default admin,
without replacing the host's AdminSite.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from pfsync_app.charts import runs_chart
from pfsync_app.conf import pfsync_settings
from pfsync_app.models import (
    Agent,
    Overview,
    Property,
    PropertyImage,
    ReportEntry,
    SyncRun,
    WebhookEvent,
)
from pfsync_app.reports.causes import cause_label
from pfsync_app.reports.failures import (
    LEVEL_RANK,
    FailureSummary,
    counted,
    example_text,
    run_entries,
    summarize_failures,
)
from pfsync_app.reports.health import FAILED_TO_RUN
from pfsync_app.reports.overview import overview
from pfsync_app.reports.summary import (
    COUNTER_LABELS,
    format_age,
    format_duration,
    local_datetime_text,
    options_items,
)


def _has(model: Any, name: str) -> bool:
    """Whether pfsync's model of a host table has field ``name`` (the site maps a column to it)."""
    return any(f.name == name for f in model._meta.get_fields())


def _present(model: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The names of ``names`` that are fields of ``model`` (or not fields at all: admin methods)."""
    fields = {f.name for f in model._meta.get_fields()}
    host = {"pf_id", "title", "area", "price", "is_published", "reference", "position"}
    host |= {"image", "source_url", "is_active"}
    return tuple(n for n in names if n in fields or n not in host)


#: Entries listed on a run's page, errors first; the entry list has them all.
RUN_PAGE_ENTRIES = 200

_STATUS_LOOK = {
    SyncRun.Status.RUNNING: ("pf-running", "▶"),
    SyncRun.Status.SUCCEEDED: ("pf-ok", "✓"),
    SyncRun.Status.FINISHED_WITH_ERRORS: ("pf-warn", "⚠"),
    SyncRun.Status.FAILED: ("pf-bad", "✗"),
    SyncRun.Status.INTERRUPTED: ("pf-muted", "■"),
    SyncRun.Status.SKIPPED: ("pf-muted", "↷"),
}


# The run list's words for a status (the whole status is on the run's page).
_SHORT_STATUS = {
    SyncRun.Status.FINISHED_WITH_ERRORS: "with errors",
    SyncRun.Status.SKIPPED: "skipped",
}


class PfsyncMedia:
    """pfsync's admin stylesheet, on every pfsync admin page."""

    css = {"all": ("pfsync_app/admin.css",)}


class ReadOnlyAdminMixin:
    """Viewable, never added, changed or deleted from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LocalTimesMixin:
    """A read-only page's date-times as pfsync shows every time: TIME_ZONE, YYYY-mm-dd HH:MM:SS.

    Django would show a model's date-time in the locale's format ("Dec. 7, 2026, 8:58 p.m.");
    each such field is shown by a callable that formats it the way the run list does.
    """

    def _local_times(self) -> dict[str, Any]:
        found = self.__dict__.get("_pf_local_times")
        if found is None:
            found = {}
            for model_field in self.model._meta.concrete_fields:  # type: ignore[attr-defined]
                if isinstance(model_field, models.DateTimeField):
                    found[model_field.name] = _local_time_display(model_field)
            self.__dict__["_pf_local_times"] = found
        return found

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        times = self._local_times()
        names = super().get_fields(request, obj)  # type: ignore[misc]
        shown = [times.get(name, name) if isinstance(name, str) else name for name in names]
        return list(dict.fromkeys(shown))  # Django adds the read-only ones after the form's

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        times = self._local_times()
        names = super().get_readonly_fields(request, obj)  # type: ignore[misc]
        shown = [times.get(name, name) if isinstance(name, str) else name for name in names]
        return [*shown, *(show for show in times.values() if show not in shown)]


def _local_time_display(model_field: Any) -> Any:
    """A read-only field's callable: the date-time of ``model_field`` by local_datetime_text."""

    def show(obj: Any) -> str:
        return local_datetime_text(getattr(obj, model_field.name, None)) or "—"

    show.__name__ = model_field.name  # the row's CSS class: field-<name>
    show.short_description = model_field.verbose_name  # type: ignore[attr-defined]
    return show


def entries_url(run_id: int, level: str | None = None, **lookups: Any) -> str:
    """The report entry list of one run: one level, or one cause (``lookups``), or all."""
    query: dict[str, Any] = {"run": run_id}
    if level:
        query["level__exact"] = level
    for key, value in lookups.items():
        query[key] = ",".join(value) if isinstance(value, list | tuple) else value
    return reverse("admin:pfsync_app_reportentry_changelist") + "?" + urlencode(query)


def run_url(run: SyncRun) -> str:
    """A run's page in the admin."""
    return reverse("admin:pfsync_app_syncrun_change", args=[run.pk])


def is_dry_run(run: SyncRun) -> bool:
    """Whether the run was a dry run (``--dry-run``: counted what it would write, wrote nothing)."""
    return isinstance(run.options, dict) and bool(run.options.get("dry_run"))


def why_it_failed(run: SyncRun) -> SafeString:
    """What stopped a run that failed or was interrupted before recording errors: its message.

    A run that could not run (the API unreachable, a database error) records no error entries;
    its message is the cause, so a page never says "nothing failed" of it.
    """
    return format_html(
        '<p class="pf-bad pf-message">The run stopped before it finished: {}</p>',
        run.message or f"no message was recorded ({run.get_status_display()})",
    )


def status_badge(run: SyncRun) -> SafeString:
    """The run's status with its colour and sign."""
    css, icon = _STATUS_LOOK.get(run.status, ("", ""))
    return format_html(
        '<span class="pf-status {}">{} {}</span>', css, icon, run.get_status_display()
    )


def level_badge(level: str) -> SafeString:
    """An entry's level, in its colour."""
    return format_html('<strong class="pf-level pf-level-{}">{}</strong>', level, level)


def cause_links(summary: FailureSummary, run_id: int) -> SafeString:
    """The failures by cause, each cause linked to its entries (the overview and run page)."""
    groups = []
    for group in summary.groups:
        causes = format_html_join(
            ", ",
            '<a href="{}">{} {}</a>',
            (
                (
                    entries_url(
                        run_id,
                        ReportEntry.Level.ERROR,
                        action__in=group.actions,
                        cause=cause_value(cause.reason, cause.http_status),
                    ),
                    cause.count,
                    cause.label,
                )
                for cause in group.causes
            ),
        )
        examples = format_html_join(
            "",
            "<li>{}</li>",
            (
                (f"{cause.label}: {example_text(entry)}",)
                for cause in group.causes
                for entry in cause.examples
            ),
        )
        groups.append(
            format_html(
                '<li><strong>{}</strong>: {}<ul class="pf-examples">{}</ul></li>',
                counted(group.count, group.kind),
                causes,
                examples,
            )
        )
    if summary.unrecorded:
        groups.append(
            format_html(
                "<li>{} more errors were counted but not recorded (PF_REPORT_MAX_ENTRIES)</li>",
                summary.unrecorded,
            )
        )
    return format_html(
        '<ul class="pf-failures">{}</ul>', format_html_join("", "{}", ((g,) for g in groups))
    )


# ---------------------------------------------------------------------------
# What an entry is about, linked
# ---------------------------------------------------------------------------


def _user_change_url(agent_id: int) -> str | None:
    """The host's own admin page of a user, when its user model is pfsync's agent table."""
    user_model = get_user_model()
    if user_model._meta.db_table != Agent._meta.db_table:
        return None
    opts = user_model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[agent_id])
    except NoReverseMatch:
        return None


def subject_links(entries: Iterable[ReportEntry]) -> dict[int, SafeString]:
    """What each entry is about, linked to its property or user (a few queries for them all)."""
    entries = list(entries)
    image_ids = {e.object_id for e in entries if e.object_type == "image" and e.object_id}
    image_properties = dict(
        PropertyImage.objects.filter(pk__in=image_ids).values_list("pk", "property_id")
    )
    unlinked = {
        e.pf_id
        for e in entries
        if e.pf_id
        and not e.object_id
        and e.action.split(".", 1)[0] in ("image", "listing", "property")
    }
    properties_by_pf_id = dict(
        Property.objects.filter(pf_id__in=unlinked).values_list("pf_id", "pk")
    )
    links = {}
    for entry in entries:
        property_id = None
        text = entry.pf_id or ""
        if entry.object_type == "property" and entry.object_id:
            property_id = entry.object_id
        elif entry.object_type == "image" and entry.object_id:
            property_id = image_properties.get(entry.object_id)
            text = (
                f"{entry.pf_id} (image {entry.object_id})"
                if entry.pf_id
                else f"image {entry.object_id}"
            )
        elif entry.object_type == "user" and entry.object_id:
            url = _user_change_url(entry.object_id)
            label = f"user {entry.pf_id or entry.object_id}"
            links[entry.pk] = (
                format_html('<a href="{}">{}</a>', url, label) if url else format_html("{}", label)
            )
            continue
        elif entry.pf_id in properties_by_pf_id:
            property_id = properties_by_pf_id[entry.pf_id]
        if property_id:
            url = reverse("admin:pfsync_app_property_change", args=[property_id])
            links[entry.pk] = format_html(
                '<a href="{}">{}</a>', url, text or f"property {property_id}"
            )
        else:
            links[entry.pk] = format_html("{}", text)
    return links


# ---------------------------------------------------------------------------
# The overview
# ---------------------------------------------------------------------------


@admin.register(Overview)
class OverviewAdmin(admin.ModelAdmin):
    """How last night went and what waits for a person, on one page."""

    Media = PfsyncMedia

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("pfsync_app.view_syncrun") or super().has_view_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        return [
            path(
                "",
                self.admin_site.admin_view(self.overview_view),
                name=f"{opts.app_label}_{opts.model_name}_changelist",
            )
        ]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        """The overview page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        data = overview()
        last = data.last_sync
        counters = []
        if last is not None:
            counters = [(label, getattr(last, key)) for key, label in COUNTER_LABELS]
        context = {
            **self.admin_site.each_context(request),
            "title": "Property Finder sync",
            "subtitle": "How last night went",
            "opts": self.model._meta,
            "app_label": self.model._meta.app_label,
            "data": data,
            "last": last,
            "last_status": status_badge(last) if last else "",
            "last_started": local_datetime_text(last.started_at) if last else "",
            "last_duration": format_duration(last.duration) if last else "",
            "last_url": run_url(last) if last else "",
            "last_entries_url": entries_url(last.pk) if last else "",
            "counters": counters,
            "failures": (
                cause_links(data.last_sync_failures, last.pk)
                if last is not None and data.last_sync_failures
                else ""
            ),
            "stopped": (
                why_it_failed(last) if last is not None and last.status in FAILED_TO_RUN else ""
            ),
            "chart": runs_chart(data.days, run_url),
            "check_started": local_datetime_text(data.last_check.run.started_at)
            if data.last_check
            else "",
            "check_url": entries_url(data.last_check.run.pk, ReportEntry.Level.ERROR)
            if data.last_check
            else "",
            "oldest_pending": local_datetime_text(data.oldest_pending),
            "events_url": reverse("admin:pfsync_app_webhookevent_changelist"),
            "runs_url": reverse("admin:pfsync_app_syncrun_changelist"),
            "no_area_url": reverse("admin:pfsync_app_property_changelist")
            + "?"
            + urlencode({"area__isnull": "True"}),
            "success_started": local_datetime_text(data.health.last_success.started_at)
            if data.health and data.health.last_success
            else "",
            "success_age": format_age(data.health.success_age)
            if data.health and data.health.last_success
            else "",
            "max_age": f"{float(pfsync_settings.PF_SYNC_MAX_AGE_HOURS):g}",
            "unmapped_more": data.unmapped_total - len(data.unmapped),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/pfsync_app/overview.html", context)


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


class CommandFilter(admin.SimpleListFilter):
    """Runs of one command: pf_sync unless another is picked, or all of them."""

    title = "command"
    parameter_name = "command"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*SyncRun.Command.choices, (self.ALL, "all commands")]

    def value(self) -> str:
        return super().value() or SyncRun.Command.SYNC

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == self.ALL:
            return queryset
        return queryset.filter(command=value)

    def choices(self, changelist: Any) -> Iterable[dict[str, Any]]:
        # No "All" that drops the parameter: that would mean pf_sync again.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    Media = PfsyncMedia
    change_form_template = "admin/pfsync_app/syncrun/change_form.html"
    list_display = (
        "started",
        "command",
        "status_short",
        "duration_text",
        "created",
        "updated",
        "images_failed_",
        "errors_",
    )
    list_display_links = ("started",)
    list_filter = (CommandFilter, "status", "started_at")
    date_hierarchy = "started_at"
    search_fields = ("message",)
    ordering = ("-started_at", "-id")
    list_per_page = 50
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("command", "status_badge"),
                    ("started", "finished", "duration_text"),
                    "message",
                    "failures",
                    "options_text",
                    "entries_by_level",
                )
            },
        ),
        (
            "Counters",
            {
                "fields": (
                    ("properties_created", "properties_updated", "properties_unpublished"),
                    "properties_republished",
                    ("images_downloaded", "images_deactivated", "images_failed"),
                    ("users_created", "users_updated", "errors"),
                )
            },
        ),
        ("Process", {"fields": (("pid", "hostname"), "alerted", "entries_dropped")}),
    )
    readonly_fields = (
        "status_badge",
        "started",
        "finished",
        "duration_text",
        "failures",
        "options_text",
        "entries_by_level",
        "alerted",
    )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        if str(object_id).isdigit():
            entries = list(run_entries(int(object_id))[:RUN_PAGE_ENTRIES])
            links = subject_links(entries)
            extra["entries"] = [
                {
                    "level": level_badge(entry.level),
                    "action": entry.action,
                    "cause": cause_label(entry.reason, entry.http_status) if entry.reason else "",
                    "subject": links.get(entry.pk, ""),
                    "message": entry.message,
                    "url": entry.url,
                    "at": local_datetime_text(entry.created_at)[11:],
                }
                for entry in entries
            ]
            total = ReportEntry.objects.filter(run_id=int(object_id)).count()
            extra["entries_total"] = total
            extra["entries_more"] = max(0, total - len(entries))
            extra["entries_all_url"] = entries_url(int(object_id))
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="started", ordering="started_at")
    def started(self, run: SyncRun) -> str:
        return local_datetime_text(run.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, run: SyncRun) -> str:
        return local_datetime_text(run.finished_at) or "—"

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: SyncRun) -> str:
        return status_badge(run)

    @admin.display(description="status", ordering="status")
    def status_short(self, run: SyncRun) -> str:
        # A short word, with the whole status and the run's message on hover: the list keeps
        # to the columns that fit a laptop screen.
        # A dry run says so: its counters are what it would have written.
        css, icon = _STATUS_LOOK.get(run.status, ("", ""))
        short = _SHORT_STATUS.get(run.status, run.status)
        if is_dry_run(run):
            css = f"{css} pf-dry"
            short = "dry run" if run.status == SyncRun.Status.SUCCEEDED else f"{short}, dry run"
        return format_html(
            '<span class="pf-status {}" title="{}: {}">{} {}</span>',
            css,
            run.get_status_display() + (" (dry run, nothing written)" if is_dry_run(run) else ""),
            run.message,
            icon,
            short,
        )

    @admin.display(description="duration")
    def duration_text(self, run: SyncRun) -> str:
        text = format_duration(run.duration)
        return f"{text} so far" if run.status == SyncRun.Status.RUNNING else text

    @admin.display(description="what failed")
    def failures(self, run: SyncRun) -> str:
        summary = summarize_failures(run)
        if summary:
            return cause_links(summary, run.pk)
        return why_it_failed(run) if run.status in FAILED_TO_RUN else "nothing"

    @admin.display(description="options")
    def options_text(self, run: SyncRun) -> str:
        items = options_items(run.options)
        if not items:
            return "—"
        return format_html(
            '<span class="pf-options">{}</span>',
            format_html_join("", '<span><span class="pf-key">{}:</span> {}</span>', items),
        )

    @admin.display(description="alert e-mail")
    def alerted(self, run: SyncRun) -> str:
        return local_datetime_text(run.alerted_at) or "none"

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

    @admin.display(description="images failed", ordering="images_failed")
    def images_failed_(self, run: SyncRun) -> int:
        return run.images_failed

    @admin.display(description="errors", ordering="errors")
    def errors_(self, run: SyncRun) -> str:
        if run.errors:
            return format_html('<strong class="pf-bad">{}</strong>', run.errors)
        return "0"


# ---------------------------------------------------------------------------
# Report entries
# ---------------------------------------------------------------------------


class CauseFilter(admin.SimpleListFilter):
    """Entries of one cause ("HTTP 404"), among the causes of the entries in view."""

    title = "cause"
    parameter_name = "cause"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        entries = ReportEntry.objects.exclude(reason="")
        run_id = request.GET.get("run", "")
        if run_id.isdigit():
            entries = entries.filter(run_id=int(run_id))  # one run's causes: no table scan
        pairs = entries.values_list("reason", "http_status").distinct().order_by()
        return sorted(
            (
                (cause_value(reason, status), cause_label(reason, status))
                for reason, status in pairs
            ),
            key=lambda item: item[1],
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        reason, _, status = value.partition(":")
        if status.isdigit():
            return queryset.filter(reason=reason, http_status=int(status))
        return queryset.filter(reason=reason, http_status__isnull=True)


def cause_value(reason: str, http_status: int | None) -> str:
    """A cause as CauseFilter's parameter: "http_status:404", "timeout:"."""
    return f"{reason}:{http_status if http_status is not None else ''}"


class EntryChangeList(ChangeList):
    """The entry list, with what each entry on the page is about looked up in a few queries."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        links = subject_links(self.result_list)
        for entry in self.result_list:
            entry.pf_subject = links.get(entry.pk, "")


@admin.register(ReportEntry)
class ReportEntryAdmin(LocalTimesMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    Media = PfsyncMedia
    list_display = ("run_link", "level_badge", "what", "subject", "message_")
    list_filter = ("level", "action", CauseFilter)
    search_fields = ("pf_id", "message", "action", "url")
    list_select_related = ("run",)
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportEntry]:
        # Annotated before ordering: ModelAdmin.get_queryset would order by level_rank too early.
        return ReportEntry.objects.annotate(level_rank=LEVEL_RANK).order_by(
            *self.get_ordering(request)
        )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        return ["level_rank", "-run_id", "id"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EntryChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        run_id = request.GET.get("run", "")
        run = SyncRun.objects.filter(pk=run_id).first() if run_id.isdigit() else None
        if run is not None:
            # The run page links here; the title says which run and links back.
            extra["title"] = (
                f"Report entries of run {run.pk}: {run.command}, "
                f"{local_datetime_text(run.started_at)}"
            )
            extra["pf_run_url"] = run_url(run)
        return super().changelist_view(request, extra)

    @admin.display(description="run", ordering="run_id")
    def run_link(self, entry: ReportEntry) -> str:
        return format_html(
            '<a href="{}" title="{} run {}, {}">#{}</a>',
            run_url(entry.run),
            entry.run.command,
            entry.run_id,
            local_datetime_text(entry.run.started_at),
            entry.run_id,
        )

    @admin.display(description="level", ordering="level_rank")
    def level_badge(self, entry: ReportEntry) -> str:
        return level_badge(entry.level)

    @admin.display(description="action and cause", ordering="action")
    def what(self, entry: ReportEntry) -> str:
        if not entry.reason:
            return entry.action
        return format_html(
            '{}<br><span class="pf-cause">{}</span>',
            entry.action,
            cause_label(entry.reason, entry.http_status),
        )

    @admin.display(description="about", ordering="pf_id")
    def subject(self, entry: ReportEntry) -> str:
        linked = getattr(entry, "pf_subject", None)
        return linked if linked is not None else subject_links([entry]).get(entry.pk, "")

    @admin.display(description="message")
    def message_(self, entry: ReportEntry) -> str:
        if entry.url and entry.url not in entry.message:
            return format_html('{}<br><span class="pf-url">{}</span>', entry.message, entry.url)
        return entry.message


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
class PropertyAdmin(LocalTimesMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    Media = PfsyncMedia
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
class WebhookEventAdmin(LocalTimesMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    Media = PfsyncMedia
    # The entity's type is the event type's first word (listing.published): not a column of
    # its own, so the list fits a laptop beside its filter.
    list_display = (
        "event_type",
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
