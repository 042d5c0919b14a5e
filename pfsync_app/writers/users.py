"""Users (agents): a PF user into the host's user table, in one transaction each.

Users pfsync creates get an unusable password and no privileges; pfsync never
changes anyone's password, staff or superuser flags, and never deletes a user.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from pfsync_app.mapping import UserValues, changed_fields, render_changes
from pfsync_app.models import Agent
from pfsync_app.writers.outcomes import CREATED, UNCHANGED, UPDATED, UserOutcome

USER_FIELDS = ("first_name", "last_name", "email", "phone", "role")


def _username_for(values: UserValues) -> str:
    base = values.fields["email"].split("@")[0] if values.fields["email"] else ""
    base = re.sub(r"[^\w.@+-]", "", base)[:120] or "pf-agent"
    taken = set(Agent.objects.filter(username__startswith=base).values_list("username", flat=True))
    candidates = (base, f"{base}-pf{values.pf_user_id}")
    for candidate in candidates:
        if candidate[:150] not in taken:
            return candidate[:150]
    suffix = 2
    while f"{base}-pf{values.pf_user_id}-{suffix}" in taken:
        suffix += 1
    return f"{base}-pf{values.pf_user_id}-{suffix}"[:150]


def unchanged_users(users: list[UserValues]) -> set[int]:
    """The PF user ids whose linked host user already holds exactly these values (one query)."""
    names = [*USER_FIELDS, "pf_user_id", "pf_public_profile_id"]
    current = {
        row["pf_user_id"]: row
        for row in Agent.objects.filter(pf_user_id__in=[u.pf_user_id for u in users]).values(*names)
    }
    same = set()
    for values in users:
        row = current.get(values.pf_user_id)
        if row is None or row["pf_public_profile_id"] != values.pf_public_profile_id:
            continue
        if all(row[name] == values.fields[name] for name in USER_FIELDS):
            same.add(values.pf_user_id)
    return same


def find_agent(values: UserValues) -> tuple[Agent | None, bool]:
    """The host user for a PF user: by pf_user_id, else an unlinked one with the same e-mail."""
    agent = Agent.objects.filter(pf_user_id=values.pf_user_id).first()
    if agent is not None:
        return agent, False
    email = values.fields["email"]
    if email:
        agent = (
            Agent.objects.filter(email__iexact=email, pf_user_id__isnull=True)
            .order_by("id")
            .first()
        )
        if agent is not None:
            return agent, True
    return None, False


def save_user(
    values: UserValues, *, dry_run: bool = False, now: datetime | None = None
) -> UserOutcome:
    """Create or update one host user from a PF user; never touches password or privileges."""
    now = now or timezone.now()
    warnings = list(values.warnings)
    with transaction.atomic():
        agent, linked = find_agent(values)
        target = dict(values.fields)
        target["pf_user_id"] = values.pf_user_id
        profile_id = values.pf_public_profile_id
        if profile_id is not None:
            holder = Agent.objects.filter(pf_public_profile_id=profile_id)
            if agent is not None:
                holder = holder.exclude(pk=agent.pk)
            # A holder's pf_user_id may be NULL, so the row's presence is what counts.
            holders = list(holder.order_by("pk").values_list("pf_user_id", flat=True)[:1])
            if holders:
                warnings.append(
                    f"public profile {profile_id} already belongs to PF user {holders[0]}; "
                    "not linked"
                )
                profile_id = agent.pf_public_profile_id if agent else None
        target["pf_public_profile_id"] = profile_id
        email = values.fields["email"]
        if email:
            sharing = Agent.objects.filter(email__iexact=email)
            if agent is not None:
                sharing = sharing.exclude(pk=agent.pk)
            other = sharing.values_list("pk", flat=True).first()
            if other is not None:
                warnings.append(f"e-mail {email} is also the e-mail of host user {other}")
        if agent is None:
            if dry_run:
                return UserOutcome(CREATED, None, [], warnings)
            agent = Agent(
                username=_username_for(values),
                password=make_password(None),
                is_staff=False,
                is_superuser=False,
                is_active=True,
                date_joined=now,
                **target,
            )
            agent.save(force_insert=True)
            return UserOutcome(CREATED, agent.pk, [], warnings)
        changed = changed_fields({name: getattr(agent, name) for name in target}, target)
        changes = render_changes(changed)
        if linked:
            changes.insert(0, f"linked by e-mail to host user {agent.pk}")
        if not changes:
            return UserOutcome(UNCHANGED, agent.pk, [], warnings)
        if not dry_run:
            Agent.objects.filter(pk=agent.pk).update(**{name: target[name] for name in changed})
        return UserOutcome(UPDATED, agent.pk, changes, warnings)


def agent_id_of(pf_user_id: int) -> int | None:
    """The id of the host user linked to this PF user, or None."""
    return Agent.objects.filter(pf_user_id=pf_user_id).values_list("pk", flat=True).first()
