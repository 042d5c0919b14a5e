"""Users (agents): a PF user into the host's user table, in one transaction each.

The user table is the site's AUTH_USER_MODEL by default, or a separate agents
table (``PFSYNC_HOST["user"]["auth"] = False``: no password, username or staff
columns). A user's Property Finder ids live in host columns when the site has
them, else in pfsync's ``AgentLink``. Users pfsync creates get an unusable
password and no privileges; pfsync never changes anyone's password, staff or
superuser flags, and never deletes a user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from pfsync_app.exceptions import RecordRejected, RowRefused
from pfsync_app.introspection import model_columns
from pfsync_app.mapping import UserValues, render_changes
from pfsync_app.models import Agent, AgentLink
from pfsync_app.signals import after_user_save, before_user_save
from pfsync_app.writers.columns import HostTable, host_table, send_signal
from pfsync_app.writers.fit import clean_text, fit_row
from pfsync_app.writers.outcomes import CREATED, UNCHANGED, UPDATED, UserOutcome
from pfsync_app.writers.rows import UnreadableCell, read_all

USER_FIELDS = ("first_name", "last_name", "email", "phone", "role")
IDS = ("pf_user_id", "pf_public_profile_id")


def users() -> HostTable:
    """The host's user table as the writers see it."""
    return host_table("user")


@dataclass
class LinkedAgent:
    """A host user and the Property Finder ids linked to it (host columns or AgentLink)."""

    row: Agent
    pf_user_id: int | None
    pf_public_profile_id: int | None

    @property
    def pk(self) -> int:
        """The host user's id."""
        return self.row.pk


def _linked(rows: list[Agent]) -> list[LinkedAgent]:
    """Host users with their PF ids (from pfsync's AgentLink when the host has no column)."""
    table = users()
    links: dict[int, AgentLink] = {}
    if any(table.kept(name) for name in IDS) and rows:
        links = AgentLink.objects.in_bulk([row.pk for row in rows], field_name="agent_id")
    result = []
    for row in rows:
        link = links.get(row.pk)
        ids = [
            getattr(row, name) if table.holds(name) else getattr(link, name, None) for name in IDS
        ]
        result.append(LinkedAgent(row, *ids))
    return result


def agents_by_pf_user(
    pf_user_ids: list[int], unreadable: list[tuple[int, UnreadableCell]] | None = None
) -> dict[int, LinkedAgent]:
    """The host users linked to these PF users, by PF user id.

    A row holding a value Django cannot convert comes with that field None;
    ``unreadable``, when given, receives (PF user id, cell) for each such value.
    """
    if users().holds("pf_user_id"):
        rows, cells = read_all(Agent.objects.filter(pf_user_id__in=pf_user_ids))
    else:
        agent_ids = AgentLink.objects.filter(pf_user_id__in=pf_user_ids).values("agent_id")
        rows, cells = read_all(Agent.objects.filter(pk__in=agent_ids))
    found = {agent.pf_user_id: agent for agent in _linked(rows) if agent.pf_user_id is not None}
    if unreadable is not None and cells:
        by_pk = {agent.pk: pf_user_id for pf_user_id, agent in found.items()}
        unreadable.extend((by_pk[cell.pk], cell) for cell in cells if cell.pk in by_pk)
    return found


def agents_by_profile() -> dict[int, int]:
    """Every linked public profile id -> host user id (listings name agents by profile)."""
    if users().holds("pf_public_profile_id"):
        return dict(
            Agent.objects.filter(pf_public_profile_id__isnull=False).values_list(
                "pf_public_profile_id", "pk"
            )
        )
    links = dict(
        AgentLink.objects.filter(pf_public_profile_id__isnull=False).values_list(
            "pf_public_profile_id", "agent_id"
        )
    )
    existing = set(Agent.objects.filter(pk__in=set(links.values())).values_list("pk", flat=True))
    return {profile: agent for profile, agent in links.items() if agent in existing}


def agent_by_reference(reference: int | str) -> int | None:
    """The id of the host user a setting names: an id (a number) or a username."""
    table = users()
    if isinstance(reference, int):
        return Agent.objects.filter(pk=reference).values_list("pk", flat=True).first()
    if table.holds("username"):
        return Agent.objects.filter(username=reference).values_list("pk", flat=True).first()
    if table.holds("email"):
        return Agent.objects.filter(email__iexact=reference).values_list("pk", flat=True).first()
    return None


def _email(values: UserValues) -> str:
    """The user's e-mail as pfsync matches users by it (what the database can compare)."""
    return clean_text(values.fields["email"])[0]


def _username_for(values: UserValues, limit: int) -> str:
    email = _email(values)
    base = email.split("@")[0] if email else ""
    base = re.sub(r"[^\w.@+-]", "", base)[: max(limit - 30, 8)] or "pf-agent"
    taken = set(Agent.objects.filter(username__startswith=base).values_list("username", flat=True))
    candidates = (base, f"{base}-pf{values.pf_user_id}")
    for candidate in candidates:
        if candidate[:limit] not in taken:
            return candidate[:limit]
    suffix = 2
    while f"{base}-pf{values.pf_user_id}-{suffix}" in taken:
        suffix += 1
    return f"{base}-pf{values.pf_user_id}-{suffix}"[:limit]


def _target(values: UserValues, profile_id: int | None) -> dict[str, Any]:
    """The user's values by host column: mapped fields, its PF ids, the map's extra columns."""
    table = users()
    fields = {name: values.fields[name] for name in USER_FIELDS}
    fields.update(pf_user_id=values.pf_user_id, pf_public_profile_id=profile_id)
    return {**table.to_columns(fields), **values.extras}


#: The API field each of a user's ids comes from, for the message of one that cannot be stored.
ID_FIELDS = {"pf_user_id": "id", "pf_public_profile_id": "publicProfile.id"}


def id_problem(values: UserValues) -> str | None:
    """Why one of the user's ids cannot be stored unaltered (out of the column's range), or None.

    Asked before the page's users are looked up: a query naming such an id fails
    as its write would, and would take every user of the page with it. The
    message ends with the API field, ``(field id)``.
    """
    table = users()
    for name, api_field in ID_FIELDS.items():
        value = getattr(values, name)
        if value is None:
            continue
        try:
            if table.holds(name):
                table.fit(table.to_columns({name: value}), identifiers=IDS)
            else:
                fit_row(model_columns(AgentLink), {name: value}, identifiers={name})
        except RowRefused as exc:
            return f"{exc} (field {api_field})"
    return None


def unchanged_users(
    values_list: list[UserValues], unreadable: list[tuple[int, UnreadableCell]] | None = None
) -> set[int]:
    """The PF user ids whose linked host user already holds exactly these values (one query).

    ``unreadable`` receives the host values Django cannot convert (``agents_by_pf_user``).
    """
    table = users()
    current = agents_by_pf_user([v.pf_user_id for v in values_list], unreadable)
    same = set()
    for values in values_list:
        agent = current.get(values.pf_user_id)
        if agent is None or agent.pf_public_profile_id != values.pf_public_profile_id:
            continue
        try:
            fitted = table.fit(_target(values, values.pf_public_profile_id), identifiers=IDS)
        except RecordRejected:  # the save itself says what is wrong with the record
            continue
        if not fitted.warnings and not table.changes(table.read(agent.row), fitted.values):
            same.add(values.pf_user_id)
    return same


def find_agent(values: UserValues) -> tuple[LinkedAgent | None, bool]:
    """The host user for a PF user: by its PF id, else an unlinked one with the same e-mail."""
    agent = agents_by_pf_user([values.pf_user_id]).get(values.pf_user_id)
    if agent is not None:
        return agent, False
    email = _email(values)
    if email and users().holds("email"):
        candidates = Agent.objects.filter(email__iexact=email)
        if users().holds("pf_user_id"):
            candidates = candidates.filter(pf_user_id__isnull=True)
        else:
            candidates = candidates.exclude(pk__in=AgentLink.objects.values("agent_id"))
        row = candidates.order_by("pk").first()
        if row is not None:
            return _linked([row])[0], True
    return None, False


def _profile_holder(profile_id: int, agent: LinkedAgent | None) -> tuple[bool, int | None]:
    """Whether another host user holds this public profile, and its PF user id."""
    if users().holds("pf_public_profile_id"):
        holder = Agent.objects.filter(pf_public_profile_id=profile_id)
        if agent is not None:
            holder = holder.exclude(pk=agent.pk)
        rows = list(holder.order_by("pk")[:1])
        if not rows:
            return False, None
        return True, _linked(rows)[0].pf_user_id
    link = AgentLink.objects.filter(pf_public_profile_id=profile_id)
    if agent is not None:
        link = link.exclude(agent_id=agent.pk)
    found = link.values_list("pf_user_id", flat=True).first()
    return found is not None, found


def save_user(
    values: UserValues, *, dry_run: bool = False, now: datetime | None = None
) -> UserOutcome:
    """Create or update one host user from a PF user; never touches password or privileges.

    Raises RecordRejected (a value that fits no way, a receiver that failed):
    nothing of this user is then written.
    """
    now = now or timezone.now()
    table = users()
    warnings = list(values.warnings)
    with transaction.atomic():
        agent, linked = find_agent(values)
        profile_id = values.pf_public_profile_id
        if profile_id is not None:
            held, by = _profile_holder(profile_id, agent)
            if held:
                warnings.append(
                    f"public profile {profile_id} already belongs to PF user {by}; not linked"
                )
                profile_id = agent.pf_public_profile_id if agent else None
        fitted = table.fit(_target(values, profile_id), identifiers=IDS)
        warnings.extend(fitted.warnings)
        email = _email(values)
        if email and table.holds("email"):
            sharing = Agent.objects.filter(email__iexact=email)
            if agent is not None:
                sharing = sharing.exclude(pk=agent.pk)
            other = sharing.values_list("pk", flat=True).first()
            if other is not None:
                warnings.append(f"e-mail {email} is also the e-mail of host user {other}")
        if agent is None:
            if dry_run:
                return UserOutcome(CREATED, None, [], warnings)
            agent_id = _create(table, values, fitted.values, profile_id, now, warnings)
            return UserOutcome(CREATED, agent_id, [], warnings)
        changed = table.changes(table.read(agent.row), fitted.values)
        kept_changes = {
            name: (getattr(agent, name), wanted)
            for name, wanted in (
                ("pf_user_id", values.pf_user_id),
                ("pf_public_profile_id", profile_id),
            )
            if table.kept(name) and getattr(agent, name) != wanted
        }
        changes = render_changes({**changed, **kept_changes})
        if linked:
            changes.insert(0, f"linked by e-mail to host user {agent.pk}")
        if not changes:
            return UserOutcome(UNCHANGED, agent.pk, [], warnings)
        if not dry_run:
            row = {column: fitted.values[column] for column in changed}
            send_signal(
                before_user_save,
                "before_user_save",
                Agent,
                values=row,
                created=False,
                agent_id=agent.pk,
                user=values.record,
            )
            written = table.fit(row, identifiers=IDS)
            warnings.extend(w for w in written.warnings if w not in warnings)
            table.update([agent.pk], written.values)
            _link(agent.pk, values.pf_user_id, profile_id)
            send_signal(
                after_user_save,
                "after_user_save",
                Agent,
                agent_id=agent.pk,
                created=False,
                changed={**changed, **kept_changes},
                user=values.record,
            )
        return UserOutcome(UPDATED, agent.pk, changes, warnings)


def _create(
    table: HostTable,
    values: UserValues,
    fitted: dict[str, Any],
    profile_id: int | None,
    now: datetime,
    warnings: list[str],
) -> int:
    """INSERT a new host user (unusable password, no privileges) and link its PF ids."""
    row = dict(fitted)
    username = table.column("username")
    if username is not None:
        limit = table.columns().get(username)
        row[username] = _username_for(values, (limit and limit.max_length) or 150)
    row.update(
        table.to_columns(
            {
                "password": make_password(None),
                "is_staff": False,
                "is_superuser": False,
                "is_active": True,
                "date_joined": now,
            }
        )
    )
    row.update(table.insert_defaults(row))
    send_signal(
        before_user_save,
        "before_user_save",
        Agent,
        values=row,
        created=True,
        agent_id=None,
        user=values.record,
    )
    written = table.fit(row, identifiers=IDS)
    warnings.extend(w for w in written.warnings if w not in warnings)
    [agent_id] = table.insert([written.values])
    _link(agent_id, values.pf_user_id, profile_id)
    send_signal(
        after_user_save,
        "after_user_save",
        Agent,
        agent_id=agent_id,
        created=True,
        changed={},
        user=values.record,
    )
    return agent_id


def _link(agent_id: int, pf_user_id: int, profile_id: int | None) -> None:
    """Keep the user's PF ids in pfsync's AgentLink when the host has no column for them."""
    table = users()
    if not any(table.kept(name) for name in IDS):
        return
    kept_profile = profile_id if table.kept("pf_public_profile_id") else None
    AgentLink.objects.update_or_create(
        pf_user_id=pf_user_id,
        defaults={"agent_id": agent_id, "pf_public_profile_id": kept_profile},
    )


def agent_id_of(pf_user_id: int) -> int | None:
    """The id of the host user linked to this PF user, or None."""
    agent = agents_by_pf_user([pf_user_id]).get(pf_user_id)
    return agent.pk if agent is not None else None
