"""A run's failures grouped by cause: the one summary every reader of a run shares.

``summarize_failures(run)`` reads a run's error entries and groups them by what
failed ("images failed") and why (``Cause``: "HTTP 404"), with the first few
entries of each cause. pf_sync's console summary, the run's one-line message
(``run_message``), the admin's overview and run page, ``pf_report --run`` and
the alert e-mail all print from it, so they never disagree:

    19 images failed: 12 HTTP 404, 7 HTTP 403
      HTTP 404: listing 01J55KHZJ013SYP141BH5QD4YP: https://images.example/4e31ac69.jpg
      ...
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When

from pfsync_app.conf import pfsync_settings
from pfsync_app.models import ReportEntry, SyncRun
from pfsync_app.reports.causes import cause_label

# What an error entry's action counts as, in the singular and the plural. Actions that
# share a wording are one group (pf_check's missing, empty and corrupt files).
KINDS: dict[str, tuple[str, str]] = {
    "image.failed": ("image failed", "images failed"),
    "image.repair_failed": ("image not repaired", "images not repaired"),
    "image.missing": ("image file missing or damaged", "image files missing or damaged"),
    "image.empty": ("image file missing or damaged", "image files missing or damaged"),
    "image.corrupt": ("image file missing or damaged", "image files missing or damaged"),
    "listing.failed": ("listing failed", "listings failed"),
    "listing.invalid": ("listing unreadable", "listings unreadable"),
    "user.failed": ("user failed", "users failed"),
    "user.invalid": ("user unreadable", "users unreadable"),
    "listings.fetch_failed": ("listing fetch stopped", "listing fetches stopped"),
    "users.fetch_failed": ("user fetch stopped", "user fetches stopped"),
    "webhook.failed": ("webhook event failed", "webhook events failed"),
    "area.link_failed": ("location not linked", "locations not linked"),
    "report_file": ("report file line not written", "report file lines not written"),
}

# The counters a run's message names, in this order, with the words it uses.
MESSAGE_COUNTERS = (
    ("properties_created", "created"),
    ("properties_updated", "updated"),
    ("properties_unpublished", "unpublished"),
    ("properties_republished", "republished"),
    ("images_downloaded", "images downloaded"),
    ("images_deactivated", "images deactivated"),
    ("users_created", "users created"),
    ("users_updated", "users updated"),
)

# Errors first, then warnings, then info (the level names sort otherwise).
LEVEL_RANK = Case(
    When(level=ReportEntry.Level.ERROR, then=Value(0)),
    When(level=ReportEntry.Level.WARNING, then=Value(1)),
    When(level=ReportEntry.Level.INFO, then=Value(2)),
    default=Value(3),
    output_field=IntegerField(),
)

#: Entries shown under each cause unless the caller asks for another number.
EXAMPLES = 3

# Longest example line, in characters: a message can be 10,000.
MAX_EXAMPLE_CHARS = 300


def kind_of(action: str) -> tuple[str, str]:
    """What an error action counts as: ("image failed", "images failed")."""
    return KINDS.get(action, (f"{action} error", f"{action} errors"))


def counted(count: int, kind: tuple[str, str]) -> str:
    """``count`` with the singular or plural wording: "1 image failed", "19 images failed"."""
    return f"{count} {kind[0] if count == 1 else kind[1]}"


@dataclass(frozen=True)
class CauseCount:
    """One cause within a group: how many entries, and the first few of them."""

    reason: str
    http_status: int | None
    count: int
    examples: tuple[ReportEntry, ...] = ()

    @property
    def label(self) -> str:
        """The cause as people read it ("HTTP 404")."""
        return cause_label(self.reason, self.http_status)

    @property
    def more(self) -> int:
        """Entries of this cause not among the examples."""
        return self.count - len(self.examples)


@dataclass(frozen=True)
class FailureGroup:
    """The failures of one kind ("images failed"), by cause, most frequent first."""

    kind: tuple[str, str]
    actions: tuple[str, ...]
    count: int
    causes: tuple[CauseCount, ...]

    def headline(self) -> str:
        """ "19 images failed: 12 HTTP 404, 7 HTTP 403", "2 users failed: timed out"."""
        text = counted(self.count, self.kind)
        if all(not cause.reason and cause.http_status is None for cause in self.causes):
            return text
        if len(self.causes) == 1:
            return f"{text}: {self.causes[0].label}"
        return f"{text}: " + ", ".join(f"{cause.count} {cause.label}" for cause in self.causes)


@dataclass(frozen=True)
class FailureSummary:
    """A run's failures grouped by kind and cause; ``unrecorded`` errors had no entry kept."""

    run_id: int
    groups: tuple[FailureGroup, ...] = ()
    unrecorded: int = 0
    max_entries: int | None = field(default=None, compare=False)

    @property
    def total(self) -> int:
        """Every error of the run, recorded or not."""
        return sum(group.count for group in self.groups) + self.unrecorded

    def __bool__(self) -> bool:
        return self.total > 0

    def headline(self) -> str:
        """Every group's headline in one line ("" when nothing failed)."""
        parts = [group.headline() for group in self.groups]
        if self.unrecorded:
            parts.append(f"{self.unrecorded} more errors not recorded")
        return "; ".join(parts)

    def lines(self, examples: int = EXAMPLES) -> list[str]:
        """Each group's headline, then the first ``examples`` entries of each cause (0: none)."""
        lines: list[str] = []
        for group in self.groups:
            lines.append(group.headline())
            for cause in group.causes if examples > 0 else ():
                shown = cause.examples[:examples]
                for entry in shown:
                    lines.append(f"  {cause.label}: {example_text(entry)}")
                if cause.count > len(shown):
                    lines.append(f"  ... and {cause.count - len(shown)} more {cause.label}")
        if self.unrecorded:
            limit = f" (PF_REPORT_MAX_ENTRIES is {self.max_entries})" if self.max_entries else ""
            lines.append(f"{self.unrecorded} more errors were counted but not recorded{limit}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON: each group with its causes and example entries."""
        return {
            "total": self.total,
            "unrecorded": self.unrecorded,
            "groups": [
                {
                    "what": group.kind[1],
                    "actions": list(group.actions),
                    "count": group.count,
                    "causes": [
                        {
                            "reason": cause.reason,
                            "http_status": cause.http_status,
                            "label": cause.label,
                            "count": cause.count,
                            "examples": [entry_dict(entry) for entry in cause.examples],
                        }
                        for cause in group.causes
                    ],
                }
                for group in self.groups
            ],
        }


def summarize_failures(run: SyncRun | int, *, examples: int = EXAMPLES) -> FailureSummary:
    """The run's error entries grouped by kind and cause, with the first ``examples`` of each."""
    if not isinstance(run, SyncRun):
        run = SyncRun.objects.get(pk=run)
    errors = ReportEntry.objects.filter(run_id=run.pk, level=ReportEntry.Level.ERROR)
    rows = errors.values("action", "reason", "http_status").annotate(n=Count("id")).order_by()
    kinds: dict[tuple[str, str], tuple[set[str], Counter[tuple[str, int | None]]]] = {}
    for row in rows:
        actions, causes = kinds.setdefault(kind_of(row["action"]), (set(), Counter()))
        actions.add(row["action"])
        causes[(row["reason"], row["http_status"])] += row["n"]
    groups = []
    for kind, (actions, causes) in kinds.items():
        ordered = sorted(causes.items(), key=lambda item: (-item[1], item[0][0], item[0][1] or 0))
        group_causes = tuple(
            CauseCount(
                reason,
                status,
                count,
                _examples(errors, actions, reason, status, examples),
            )
            for (reason, status), count in ordered
        )
        groups.append(
            FailureGroup(kind, tuple(sorted(actions)), sum(causes.values()), group_causes)
        )
    groups.sort(key=lambda group: (-group.count, group.kind[1]))
    recorded = sum(group.count for group in groups)
    return FailureSummary(
        run_id=run.pk,
        groups=tuple(groups),
        unrecorded=max(0, run.errors - recorded),
        max_entries=_max_entries(),
    )


def entry_filter(
    actions: tuple[str, ...] | set[str], reason: str, http_status: int | None
) -> dict[str, Any]:
    """The ORM lookups of the entries of one cause (the admin links to the same)."""
    lookups: dict[str, Any] = {"action__in": sorted(actions), "reason": reason}
    if http_status is None:
        lookups["http_status__isnull"] = True
    else:
        lookups["http_status"] = http_status
    return lookups


def _examples(
    errors: Any, actions: set[str], reason: str, status: int | None, count: int
) -> tuple[ReportEntry, ...]:
    if count <= 0:
        return ()
    return tuple(errors.filter(Q(**entry_filter(actions, reason, status))).order_by("id")[:count])


def _max_entries() -> int:
    return int(pfsync_settings.PF_REPORT_MAX_ENTRIES)


def subject_of(entry: ReportEntry) -> str:
    """What an entry is about, as people name it: "listing 01J...", "user 7", or ""."""
    if not entry.pf_id:
        return ""
    family = entry.action.split(".", 1)[0]
    if family in ("image", "listing", "property") and entry.object_type != "image":
        return f"listing {entry.pf_id}"
    if family == "user":
        return f"user {entry.pf_id}"
    return ""


def example_text(entry: ReportEntry) -> str:
    """One entry in a line: its listing or user, then the URL that failed or its message."""
    subject = subject_of(entry)
    lines = entry.message.strip().splitlines()
    detail = entry.url or (lines[0] if lines else "")
    if subject and detail and not detail.startswith(subject):
        text = f"{subject}: {detail}"
    else:
        text = detail or subject or entry.action
    if len(text) > MAX_EXAMPLE_CHARS:
        text = text[: MAX_EXAMPLE_CHARS - 1] + "…"
    return text


def entry_dict(entry: ReportEntry) -> dict[str, Any]:
    """One entry as JSON (pf_report --run --json, pf_sync --json)."""
    return {
        "id": entry.pk,
        "level": entry.level,
        "action": entry.action,
        "pf_id": entry.pf_id,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "reason": entry.reason,
        "http_status": entry.http_status,
        "cause": cause_label(entry.reason, entry.http_status) if entry.reason else "",
        "url": entry.url,
        "message": entry.message,
        "created_at": entry.created_at.isoformat() if entry.created_at else None,
    }


def counters_text(run: SyncRun) -> str:
    """The run's non-zero counters in words: "60 created, 54 images downloaded"."""
    return ", ".join(
        f"{getattr(run, name)} {words}" for name, words in MESSAGE_COUNTERS if getattr(run, name)
    )


def run_message(run: SyncRun, summary: FailureSummary | None = None) -> str:
    """A finished run in one line: what it did, then what failed by cause.

    "60 created, 54 images downloaded; 19 images failed: 12 HTTP 404, 7 HTTP 403".
    """
    summary = summary if summary is not None else summarize_failures(run, examples=0)
    done = counters_text(run) or "nothing changed"
    if isinstance(run.options, dict) and run.options.get("dry_run"):
        done = f"dry run, nothing written: {done}"
    failed = summary.headline()
    return f"{done}; {failed}" if failed else done


def run_entries(run_id: int) -> QuerySet[ReportEntry]:
    """A run's entries, errors first, then warnings, then info; oldest first within each."""
    return (
        ReportEntry.objects.filter(run_id=run_id)
        .annotate(level_rank=LEVEL_RANK)
        .order_by("level_rank", "id")
    )
