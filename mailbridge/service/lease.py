"""One active `mailbridge run` per mailbox; any other waits as its standby.

A second node for availability, or a cron `run --once` overlapping the service, must not
fetch and move the same mail at the same moment: the database would keep each email once,
but two processes racing over one inbox waste work and trip over each other's moves. So
`run` holds the mailbox's lease (a lock that ends with its holder, store/locks.py) while
it fetches, and a second `run` waits, looking again every LEASE_POLL_SECONDS, until the
holder dies or stops; then it takes over. Several mailboxes (configs on one database) each
have their own lease, named for the mailbox.
"""

from __future__ import annotations

from mailbridge.config import Config
from mailbridge.mailbox.factory import source_name
from mailbridge.store.locks import Holder, ProcessLock, holder_of, lock_for

# How often a standby looks whether the lease is free: with the database server's ~11 s to
# notice a holder whose machine lost power, it takes over within 15 seconds.
LEASE_POLL_SECONDS = 2.0
# How often the holder makes sure it still holds it (a lost database connection is a lost
# lease), also while it waits for mail.
LEASE_CHECK_SECONDS = 5.0


def lease_name(mailbox: str) -> str:
    return f"mailbox:{mailbox}"


# The role a `run --once` holds the lease in: a service that waited for one to finish has
# taken nothing over from anybody.
ONCE = "once"


def mailbox_lease(config: Config, mailbox: str, role: str = "") -> ProcessLock:
    """The lease on `mailbox` (a source's name), not yet taken."""
    return lock_for(config.database.url, config.storage.data_dir, lease_name(mailbox), role)


def lease_holder(config: Config, mailbox: str | None = None) -> Holder | None:
    """Who processes the mailbox now (another process's view), or None."""
    name = lease_name(mailbox or source_name(config))
    return holder_of(config.database.url, config.storage.data_dir, name)


def describe(holder: Holder) -> str:
    """A holder as a person reads it: "council-mb2:4181, since 09:12 UTC"."""
    if holder.since is None:
        return holder.name
    return f"{holder.name}, since {holder.since:%d %b %H:%M} UTC"
