"""A person's roles, read from the directory at every request: removing someone from the
config or the directory takes effect on their next click, not at their next sign-in."""

from __future__ import annotations

from enum import StrEnum

from mailbridge.store.models import Person, PersonKind


class Role(StrEnum):
    """What a route asks of whoever calls it (web/routing.py)."""

    PUBLIC = "public"  # anyone, signed in or not: the sign-in pages
    SIGNED_IN = "signed_in"  # anyone the directory knows, whatever their role
    COORDINATOR = "coordinator"  # the Member Support Team
    OFFICER = "officer"
    MEMBER = "member"
    DELEGATE = "delegate"
    COUNCILLOR = "councillor"  # a member or a delegate: the councillors' pages
    # Another council system's bearer token (web/api.py), never a person's: a read token
    # reads cases, a write token reads them too and adds to them.
    API_READ = "api_read"
    API_WRITE = "api_write"


def roles_of(person: Person | None) -> frozenset[Role]:
    """Coordinators are the config's coordinators (mirrored into the directory) and officers
    imported with the `coordinator` flag; an inactive person has no role at all."""
    if person is None or not person.active:
        return frozenset()
    roles = {Role.SIGNED_IN}
    if person.kind == PersonKind.COORDINATOR:
        roles.add(Role.COORDINATOR)
    elif person.kind == PersonKind.OFFICER:
        roles.add(Role.OFFICER)
        if person.coordinator:
            roles.add(Role.COORDINATOR)
    elif person.kind == PersonKind.MEMBER:
        roles |= {Role.MEMBER, Role.COUNCILLOR}
    elif person.kind == PersonKind.DELEGATE:
        roles |= {Role.DELEGATE, Role.COUNCILLOR}
    return frozenset(roles)


def may(person: Person | None, role: Role) -> bool:
    return role == Role.PUBLIC or role in roles_of(person)
