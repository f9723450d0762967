"""Who is at the command line: the person the audit and a case's events name.

An operating-system account proves more than an environment variable (`LOGNAME` is
whatever the caller sets), so the account is read from the process's user id. A coordinator
is named in config with the `os_user` they log in as; on a shared service account, `--as`
names the coordinator, checked against the directory's coordinators.
"""

from __future__ import annotations

import os
import pwd
import socket

from sqlmodel import Session

from mailbridge.cases.directory import identify
from mailbridge.config import Config
from mailbridge.errors import UserError
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.store.models import PersonKind


def os_account() -> str:
    """The account this process runs as, from its user id (not from LOGNAME or USER)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's uid with no passwd entry
        return f"uid {uid}"


def operator(session: Session, config: Config, claimed: str | None) -> Actor:
    """The command line's actor: `--as` (a coordinator), else the coordinator whose
    `os_user` this account is, else the account itself as `os:<account>`."""
    account = os_account()
    origin = f"{account}@{socket.gethostname()}"
    owners = [c for c in config.coordinators if c.os_user == account]
    if len(owners) > 1:
        raise UserError(
            f"this server account ({account}) is the os_user of {len(owners)} coordinators "
            f"({', '.join(c.email for c in owners)}); give it to one in the config file"
        )
    mapped = owners[0] if owners else None
    if claimed:
        address = claimed.strip().lower()
        # The config file is the only source of coordinators (the directory mirrors it when
        # the service starts), so one just added counts before the service restarts, and
        # one just removed no longer does.
        if address not in {c.email.lower() for c in config.coordinators}:
            raise UserError(
                f"--as {claimed.strip()}: not a coordinator (coordinators are the "
                "[[coordinators]] in the config file); give your own address"
            )
        if mapped and mapped.email.lower() != address:
            raise UserError(
                f"--as {claimed.strip()}: this server account ({account}) belongs to "
                f"{mapped.email}; run it as yourself, or without --as"
            )
        return Actor(address, Channel.CLI, origin, _coordinator_id(session, address))
    if mapped:
        address = mapped.email.lower()
        return Actor(address, Channel.CLI, origin, _coordinator_id(session, address))
    return Actor(f"os:{account}", Channel.CLI, origin)


def _coordinator_id(session: Session, address: str) -> int | None:
    """The directory's coordinator at `address`; None until the service has mirrored it."""
    who = identify(session, address)
    return who.person_id if who.kind == PersonKind.COORDINATOR else None
