"""`mailbridge check`: is this configuration ready to run? Each part looked at, nothing changed.

Setting mailbridge up means getting four things right at once (a database, a data folder,
the shared mailbox and an SMTP server, often Microsoft 365 with OAuth): each check logs in
or opens as the service would, says what it found, and for each problem what to do. No mail
is fetched, moved or sent; no folder, table or file is created.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from shlex import quote
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

from mailbridge.config import Config, Secret, signing_keys, without_password
from mailbridge.errors import DeliveryError, MailbridgeError, first_line
from mailbridge.probe import Probe, loopback, plural
from mailbridge.store.blobs import FILE_NAME as BLOB_FILE
from mailbridge.store.db import make_engine
from mailbridge.store.migrate import SCHEMA_HEAD
from mailbridge.store.models import (
    AuditRecord,
    Case,
    CaseStatus,
    OutboxMessage,
    OutboxStatus,
    Person,
    PersonKind,
    QuarantineItem,
    QuarantineStatus,
    WebhookDelivery,
    WebhookStatus,
    as_utc,
    utcnow,
)

# Below this much free space in the data folder, say so: every email and attachment is kept.
LOW_SPACE_BYTES = 1_000_000_000


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"  # works, but probably not as meant
    FAILED = "failed"  # mailbridge cannot run like this


@dataclass(frozen=True, slots=True)
class Finding:
    part: str  # database, storage, files, keys, mailbox, smtp, delivery, retention, trust, ...
    where: str  # what was looked at, never with a password
    status: Status
    found: str
    advice: tuple[str, ...] = ()  # what to do, one line each


def check_all(config: Config) -> list[Finding]:
    scanner = check_scanner(config)
    operators = check_operators(config)
    return [
        check_database(config),
        check_storage(config),
        check_files(config),
        check_keys(config),
        check_mailbox(config),
        check_service(config),
        check_smtp(config),
        check_delivery(config),
        check_health(config),
        check_retention(config),
        check_trust(config),
        *([scanner] if scanner else []),
        *([operators] if operators else []),
        *([web] if (web := check_web(config)) else []),
        *check_webhooks(config),
    ]


# --- trust ------------------------------------------------------------------------------

_ROLES = {
    "officer": "officers",
    "coordinator": "coordinators",
    "member": "members",
    "delegate": "delegates",
    "delivery_report": "delivery reports",
}


def check_trust(config: Config) -> Finding:
    """Whose From is proven, by which gateway: said plainly, as a wrong answer either way
    (nobody proven, or everybody quarantined) does not show until mail arrives."""
    trust = config.trust
    required = {r: q for r, q in trust.requirements().items() if q != "none"}
    names = [*trust.authserv_ids, *(["Microsoft 365"] if trust.microsoft365 else [])]
    where = "[trust] " + (", ".join(names) if names else "no gateway named")
    unproven = [_ROLES[r] for r, q in trust.requirements().items() if q == "none"]
    if not required:
        return Finding(
            "trust",
            where,
            Status.WARNING,
            "senders are not authenticated: whoever writes a councillor's, officer's or "
            "coordinator's address in From acts as them (every [trust] require is none)",
            ("name your mail gateway in [trust] (authserv_ids, or microsoft365 = true) and "
             "require dmarc or aligned: see docs/security.md",),
        )  # fmt: skip
    if not names:
        return Finding(
            "trust",
            where,
            Status.FAILED,
            "no mail gateway named, so no sender can be proven: every email from "
            f"{', '.join(_ROLES[r] for r in required)} would be quarantined as "
            "sender_unauthenticated",
            ("set [trust] authserv_ids to your gateway's authserv-id (or microsoft365 = "
             'true for Exchange Online): see docs/security.md; require = "none" turns the '
             "check off",),
        )  # fmt: skip
    found = "; ".join(f"{_ROLES[r]} {q}" for r, q in required.items())
    advice: list[str] = []
    if unproven:
        found += f"; not authenticated: {', '.join(unproven)}"
    if trust.microsoft365 and not trust.microsoft365_auth_sources:
        advice.append(
            "internal senders are not recognised until [trust] microsoft365_auth_sources "
            "names your tenant's servers (X-MS-Exchange-Organization-AuthSource)"
        )
    status = Status.WARNING if unproven or advice else Status.OK
    return Finding("trust", where, status, found, tuple(advice))


# --- database ---------------------------------------------------------------------------


def check_database(config: Config) -> Finding:
    where = make_url(config.database.url).render_as_string(hide_password=True)
    if _no_database_file(config):
        return Finding(
            "database",
            where,
            Status.WARNING,
            "no database file yet",
            ("the first mailbridge command creates it (e.g. mailbridge db upgrade)",),
        )
    engine = make_engine(config.database.url)
    try:
        with engine.connect() as conn:
            try:
                revisions = list(conn.execute(text("SELECT version_num FROM alembic_version")))
            except DBAPIError:
                conn.rollback()
                revisions = None
            if not revisions:
                return Finding(
                    "database",
                    where,
                    Status.WARNING,
                    "reachable, no mailbridge tables yet",
                    ("the first mailbridge command creates them (e.g. mailbridge db upgrade)",),
                )
            revision = str(revisions[0][0])
            if revision != SCHEMA_HEAD:
                return _other_schema(where, revision)
            return _directory_finding(where, conn, config)
    except Exception as exc:  # noqa: BLE001 - any driver's error, told in one line
        return Finding(
            "database",
            where,
            Status.FAILED,
            f"cannot open it: {first_line(exc)}",
            ("check [database] url and that the database server is running",),
        )
    finally:
        engine.dispose()


def _no_database_file(config: Config) -> bool:
    """A SQLite database not made yet: looking would create it."""
    url = make_url(config.database.url)
    file = url.database if url.get_backend_name() == "sqlite" else None
    return file not in (None, "", ":memory:") and not Path(str(file)).exists()


def _other_schema(where: str, revision: str) -> Finding:
    if revision.isdigit() and int(revision) < int(SCHEMA_HEAD):
        return Finding(
            "database",
            where,
            Status.WARNING,
            f"schema {revision}, this mailbridge uses {SCHEMA_HEAD}",
            ("the next mailbridge command upgrades it (or mailbridge db upgrade now)",),
        )
    return Finding(
        "database",
        where,
        Status.FAILED,
        f"schema {revision} is newer than this mailbridge knows ({SCHEMA_HEAD})",
        ("run the mailbridge version that wrote it, or install a newer one",),
    )


def _directory_finding(where: str, conn: Connection, config: Config) -> Finding:
    people = dict(
        conn.execute(
            select(Person.kind, func.count())
            .where(Person.active == True)  # noqa: E712
            .group_by(Person.kind)
        ).all()
    )
    open_cases = conn.execute(
        select(func.count())
        .select_from(Case)
        .where(Case.status.in_([CaseStatus.NEW, CaseStatus.IN_PROGRESS]))  # type: ignore[attr-defined]
    ).scalar_one()
    waiting = conn.execute(
        select(func.count())
        .select_from(QuarantineItem)
        .where(QuarantineItem.status == QuarantineStatus.WAITING)
    ).scalar_one()
    members = people.get(PersonKind.MEMBER, 0)
    found = (
        f"schema {SCHEMA_HEAD} (current); {plural(members, 'member')}, "
        f"{plural(people.get(PersonKind.DELEGATE, 0), 'delegate')}, "
        f"{plural(people.get(PersonKind.OFFICER, 0), 'officer')}; "
        f"{plural(open_cases, 'open case')}; {waiting} waiting in quarantine"
    )
    advice: list[str] = []
    if members == 0:
        advice.append(
            "no members yet, so every email would be quarantined as from an unknown sender: "
            "mailbridge members import members.csv"
        )
    if not config.coordinators:
        advice.append("no [[coordinators]] in the config: nobody gets the coordinators' digest")
    return Finding("database", where, Status.WARNING if advice else Status.OK, found, tuple(advice))


# --- delivery: is the outbox being sent? ------------------------------------------------

# Mail due this long ago and still not sent, with nothing sent meanwhile either (a rate
# limit works through a backlog slowly, but it works), means nobody is delivering it.
STUCK_AFTER = timedelta(minutes=15)
FAILED_WINDOW = timedelta(days=7)
DAY = timedelta(days=1)


def check_delivery(config: Config, now: datetime | None = None) -> Finding:
    """What the outbox says about the running service: sent lately, waiting, refused."""
    now = now or utcnow()
    if _no_database_file(config):
        return Finding("delivery", "outbox", Status.OK, "nothing sent or queued yet")
    engine = make_engine(config.database.url)
    try:
        with engine.connect() as conn:
            return _delivery_finding(conn, now)
    except Exception as exc:  # noqa: BLE001 - the database finding says what is wrong
        return Finding("delivery", "outbox", Status.OK, f"not looked at ({first_line(exc)[:80]})")
    finally:
        engine.dispose()


def _delivery_finding(conn: Connection, now: datetime) -> Finding:
    out = OutboxMessage
    status = col(out.status)
    sent = conn.execute(
        select(func.count()).where(status == OutboxStatus.SENT, col(out.sent_at) >= now - DAY)
    ).scalar_one()
    waiting = conn.execute(select(func.count()).where(status == OutboxStatus.PENDING)).scalar_one()
    stuck_since = conn.execute(
        select(func.min(out.next_attempt_at)).where(
            status == OutboxStatus.PENDING, col(out.next_attempt_at) <= now - STUCK_AFTER
        )
    ).scalar_one()
    moving = conn.execute(
        select(func.count()).where(
            status == OutboxStatus.SENT, col(out.sent_at) >= now - STUCK_AFTER
        )
    ).scalar_one()
    failed = list(
        conn.execute(
            select(out.case_reference)
            .where(status == OutboxStatus.FAILED, col(out.created_at) >= now - FAILED_WINDOW)
            .order_by(col(out.id).desc())
        ).scalars()
    )
    found = f"{sent} sent in the last 24 hours; {waiting} waiting; {len(failed)} refused in 7 days"
    advice = []
    if stuck_since is not None and not moving:
        advice.append(
            f"mail due since {as_utc(stuck_since):%d %b %H:%M} UTC is still waiting: is "
            "mailbridge run running, and can it reach the SMTP server? (its log says "
            "'delivery paused' when it cannot)"
        )
    if failed:
        refs = sorted({r for r in failed if r})
        named = ", ".join(refs[:3]) + (", …" if len(refs) > 3 else "")
        which = f" (cases {named})" if refs else ""
        advice.append(
            f"{plural(len(failed), 'email')} could not be delivered{which}: mailbridge case "
            "show REF gives the server's words"
        )
    return Finding(
        "delivery", "outbox", Status.WARNING if advice else Status.OK, found, tuple(advice)
    )


# --- health: what the running service last wrote ------------------------------------------


def stale_after(config: Config) -> timedelta:
    """health.json is rewritten every [schedule] tick; older than this, nobody is writing it
    (a long batch delays a tick, hence the slack)."""
    return max(timedelta(seconds=5 * config.schedule.tick_seconds), timedelta(minutes=10))


def check_health(config: Config, now: datetime | None = None) -> Finding:
    """What `mailbridge run` last wrote to health.json for this mailbox: FAILED while an
    incident is open (the alert may not have gone: SMTP may be the failure), a warning when
    nobody has written it lately."""
    from mailbridge.mailbox.factory import source_name
    from mailbridge.service.alerts import HEALTH_FILE, WORDS, Kind, alert_recipients, read_health

    now = now or utcnow()
    where = str(config.storage.data_dir / HEALTH_FILE)
    advice: list[str] = []
    if not alert_recipients(config):
        advice.append(
            "no [alerts] recipients and no coordinators: alerts go to health.json and the log only"
        )
    entry = ((read_health(config.storage.data_dir) or {}).get("mailboxes") or {}).get(
        source_name(config)
    )
    if not isinstance(entry, dict):  # not running yet: the other parts say if it can
        found = "nothing written yet: mailbridge run writes it every [schedule] tick"
        return Finding("health", where, _worst(advice), found, tuple(advice))
    found = (
        f"{entry.get('state')} since {_when(entry.get('since'))}; last fetch "
        f"{_when(entry.get('last_fetch'))}; last send {_when(entry.get('last_send'))}; "
        f"written {_when(entry.get('written_at'))} by {entry.get('holder')}"
    )
    status = _worst(advice)
    written = _moment(entry.get("written_at"))
    if written is None or now - written > stale_after(config):
        status = Status.WARNING
        advice.insert(0, "not written lately: is mailbridge run running? (systemctl status)")
    kinds = {k.value for k in Kind}
    problems = [p for p in entry.get("problems") or [] if p.get("kind") in kinds]
    for problem in reversed(problems):
        words = WORDS[Kind(problem["kind"])]
        status = Status.FAILED
        advice.insert(0, f"{words.what} since {_when(problem.get('since'))}: {words.advice}")
    return Finding("health", where, status, found, tuple(advice))


def _worst(advice: list[str]) -> Status:
    return Status.WARNING if advice else Status.OK


def _moment(text: object) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(str(text)))
    except ValueError:
        return None


def _when(text: object) -> str:
    moment = _moment(text)
    return f"{moment:%d %b %H:%M} UTC" if moment else "never"


# --- retention --------------------------------------------------------------------------

# The daily run is late when the last one is older than this (a day, and slack for a restart).
RETENTION_LATE = timedelta(hours=36)


def check_retention(config: Config, now: datetime | None = None) -> Finding:
    """Whether the retention policy is being carried out: its daily run, when it last ran
    (from the audit), and the cases on legal hold."""
    policy = config.retention
    where = f"[retention] {policy.completed_case_months} months after completion"
    now = now or utcnow()
    advice: list[str] = []
    if not policy.run_at:
        advice.append(
            'the daily run is off (run_at = ""): run `mailbridge retention run` every day '
            "yourself (cron, a systemd timer), or set run_at"
        )
    if _no_database_file(config):
        return Finding(
            "retention",
            where,
            Status.WARNING if advice else Status.OK,
            "nothing kept yet",
            tuple(advice),
        )
    engine = make_engine(config.database.url)
    try:
        with engine.connect() as conn:
            last = conn.execute(
                select(func.max(AuditRecord.at)).where(AuditRecord.action == "retention.run")
            ).scalar_one()
            held = conn.execute(
                select(func.count()).where(col(Case.held_at).is_not(None))
            ).scalar_one()
            oldest = conn.execute(select(func.min(Case.created_at))).scalar_one()
    except Exception as exc:  # noqa: BLE001 - the database finding says what is wrong
        return Finding("retention", where, Status.OK, f"not looked at ({first_line(exc)[:80]})")
    finally:
        engine.dispose()
    daily = f"daily at {policy.run_at}" if policy.run_at else "no daily run"
    ran = f"last run {as_utc(last):%d %b %Y %H:%M} UTC" if last else "not run yet"
    found = f"{daily}; {ran}; {plural(held, 'case')} on legal hold"
    late_since = as_utc(last) if last else (as_utc(oldest) if oldest else None)
    if policy.run_at and late_since is not None and now - late_since > RETENTION_LATE:
        advice.append(
            "no retention run for over a day: is `mailbridge run` running? "
            "(`mailbridge retention run --dry-run` shows what is due)"
        )
    return Finding(
        "retention", where, Status.WARNING if advice else Status.OK, found, tuple(advice)
    )


# --- storage ----------------------------------------------------------------------------


def check_storage(config: Config) -> Finding:
    data_dir = config.storage.data_dir
    where = str(data_dir)
    there = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
    if there is None or not there.is_dir():
        return Finding(
            "storage",
            where,
            Status.FAILED,
            f"{there} is not a folder" if there else "no such folder",
            ("check [storage] data_dir",),
        )
    if not os.access(there, os.W_OK | os.X_OK):
        return Finding(
            "storage",
            where,
            Status.FAILED,
            f"cannot write in {there}",
            ("give the user running mailbridge write access, or change [storage] data_dir",),
        )
    free = shutil.disk_usage(there).free
    found = ("writable" if there == data_dir else "created at the first run") + (
        f", {free / 1e9:.1f} GB free"
    )
    if free < LOW_SPACE_BYTES:
        return Finding(
            "storage",
            where,
            Status.WARNING,
            found,
            ("every email and attachment is kept here: make room, or move [storage] data_dir",),
        )
    return Finding("storage", where, Status.OK, found)


def check_scanner(config: Config) -> Finding | None:
    """The virus scanner, when one is set: a missing one holds every attachment back."""
    command = config.attachments.scan_command
    if not command:
        return None
    found = shutil.which(command[0])
    if found is None:
        return Finding(
            "scanner",
            command[0],
            Status.WARNING,
            "the virus scanner is not there",
            (
                "install it, or correct [attachments] scan_command: until then every "
                "attachment is held back as a failed scan",
            ),
        )
    return Finding("scanner", command[0], Status.OK, f"virus scan by {found}")


# --- who is at the command line ----------------------------------------------------------


def check_operators(config: Config) -> Finding | None:
    """The server accounts `[[coordinators]] os_user` links to coordinators, when any is
    set: one that is not an account here, or is linked twice, names nobody (the audit then
    records the bare account, or the command refuses to guess)."""
    linked = [(c.os_user, c.email) for c in config.coordinators if c.os_user]
    if not linked:
        return None
    where = "[[coordinators]] os_user"
    accounts = [account for account, _ in linked]
    advice = tuple(
        [
            f"{account} ({email}) is not an account on this server: correct os_user"
            for account, email in linked
            if not _is_account(account)
        ]
        + [
            f"{account} is the os_user of {accounts.count(account)} coordinators: give it to one"
            for account in sorted(set(accounts))
            if accounts.count(account) > 1
        ]
    )
    if advice:
        return Finding("accounts", where, Status.WARNING, f"{len(advice)} to correct", advice)
    shown = ", ".join(f"{account} as {email}" for account, email in linked)
    return Finding("accounts", where, Status.OK, f"server accounts linked: {shown}")


def _is_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- the signing key ---------------------------------------------------------------------


def check_keys(config: Config) -> Finding:
    """The key our Message-IDs are signed with: `run` refuses to start without a good one."""
    sec = config.security
    where = (
        sec.signing_key.shown(config.source)
        if sec.signing_key_file or sec.signing_key_env
        else "[security]"
    )
    try:
        keys = signing_keys(config)
    except MailbridgeError as exc:
        return Finding("keys", where, Status.FAILED, str(exc))
    if not keys:
        return Finding(
            "keys",
            where,
            Status.FAILED,
            "no signing key, so mailbridge run will not start",
            (
                "mailbridge keys generate signing.key, then set [security] signing_key_file "
                '= "signing.key"',
            ),
        )
    previous = len(keys) - 1
    found = f"signing key of {len(keys[0])} bytes" + (
        f"; {plural(previous, 'previous key')} still accepted on replies" if previous else ""
    )
    return Finding("keys", where, Status.OK, found)  # who may read the files: check_files


# --- who can read it on the server -------------------------------------------------------


def check_files(config: Config) -> Finding:
    """The config (a database password may be written in it), the secret files, the data
    folder and the databases are for mailbridge's user alone: each that group or others
    may open is named, with the chmod that closes it. Missing ones are other checks' news."""
    there = [path for path in private_paths(config) if path.exists()]
    advice = tuple(line for path in there if (line := open_to_others(path)))
    where = "config, secret files, data folder, database"
    if advice:
        found = f"{len(advice)} of {len(there)} can be read by others on this server"
        return Finding("files", where, Status.WARNING, found, advice)
    return Finding("files", where, Status.OK, f"{len(there)} readable by mailbridge's user only")


def private_paths(config: Config) -> list[Path]:
    secrets = [
        config.security.signing_key,
        *(Secret(file=file) for file in config.security.previous_signing_keys),
        *(
            secret
            for server in (config.mailbox, config.smtp)
            for secret in (server.password, *([server.oauth.client_secret] if server.oauth else []))
        ),
    ]
    url = make_url(config.database.url)
    database = url.database if url.get_backend_name() == "sqlite" else None
    data_dir = Path(config.storage.data_dir)
    return [
        *([config.source] if config.source else []),
        *(secret.path(config.source) for secret in secrets if secret.file),
        data_dir,
        *([Path(database)] if database not in (None, "", ":memory:") else []),
        data_dir / "blobs" / BLOB_FILE,
    ]


def open_to_others(path: Path) -> str | None:
    """The one rule: a file 0600, a folder 0700; else what to type to make it so."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return None
    fix = "chmod 700" if path.is_dir() else "chmod 600"
    return f"{path} is {mode:04o}, open to group or others on this server: {fix} {quote(str(path))}"


# --- the service ------------------------------------------------------------------------


def check_service(config: Config) -> Finding:
    """Which `mailbridge run` holds the mailbox's lease, if any (service/lease.py)."""
    from mailbridge.mailbox.factory import source_name
    from mailbridge.service.lease import describe, lease_holder

    where = without_password(source_name(config))
    if _no_database_file(config):
        return Finding("service", where, Status.OK, "not started yet")
    try:
        holder = lease_holder(config)
    except Exception as exc:  # noqa: BLE001 - the database finding says what is wrong
        return Finding("service", where, Status.OK, f"not looked at ({first_line(exc)[:80]})")
    if holder is None:
        return Finding(
            "service", where, Status.OK, "no mailbridge run is processing this mailbox now"
        )
    return Finding(
        "service",
        where,
        Status.OK,
        f"held by {describe(holder)}; any other mailbridge run on it stands by",
    )


# --- webhooks ------------------------------------------------------------------------------

WEBHOOK_PROBE_SECONDS = 5.0


def check_webhooks(config: Config) -> list[Finding]:
    """Each [[webhooks]] receiver: its secret readable, its host reachable (a connection,
    and TLS for https, opened and closed: no request, so no event is sent), and what its
    outbox holds undelivered."""
    if not config.webhooks:
        return []
    held = _webhooks_held(config)
    found = []
    for hook in config.webhooks:
        # Never the query: some receivers' URLs carry a key there (Power Automate's sig=).
        where = f"{hook.name} {without_password(hook.url).split('?', 1)[0]}"
        try:
            config.secret(f"[[webhooks]] {hook.name} secret", hook.secret)
        except MailbridgeError as exc:
            found.append(Finding("webhooks", where, Status.FAILED, "secret missing", (str(exc),)))
            continue
        problem = _unreachable(hook.url)
        waiting, failed = held.get(hook.name, (0, 0))
        said = f"{waiting} waiting, {failed} failed"
        advice = []
        if problem:
            advice.append(
                f"cannot connect ({problem}): events wait in the outbox and are retried "
                "for a day; check the URL and the firewall"
            )
        if failed:
            advice.append(
                f"{plural(failed, 'event')} given up on: mailbridge webhooks list shows why, "
                f"mailbridge webhooks retry --receiver {hook.name} sends them again"
            )
        parts = urlsplit(hook.url)
        if parts.scheme == "http" and not loopback(parts.hostname or ""):
            advice.append("plain http on a network address: use https, the body names cases")
        status = Status.WARNING if advice else Status.OK
        reach = "unreachable" if problem else "reachable"
        found.append(Finding("webhooks", where, status, f"{reach}; {said}", tuple(advice)))
    return found


def _unreachable(url: str) -> str | None:
    """Why a connection to the URL's host cannot be opened, or None when it can."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=WEBHOOK_PROBE_SECONDS) as sock:
            if parts.scheme == "https":
                with ssl.create_default_context().wrap_socket(sock, server_hostname=host):
                    pass
    except (OSError, ssl.SSLError) as exc:
        return first_line(exc)[:120] or type(exc).__name__
    return None


def _webhooks_held(config: Config) -> dict[str, tuple[int, int]]:
    """Per receiver: rows waiting and rows failed (none looked at without a database)."""
    if _no_database_file(config):
        return {}
    engine = make_engine(config.database.url)
    held: dict[str, list[int]] = {}
    try:
        with engine.connect() as conn:
            for receiver, status, count in conn.execute(
                select(WebhookDelivery.receiver, WebhookDelivery.status, func.count())
                .where(col(WebhookDelivery.status) != WebhookStatus.DELIVERED)
                .group_by(WebhookDelivery.receiver, WebhookDelivery.status)
            ):
                slot = 0 if status == WebhookStatus.PENDING else 1
                held.setdefault(receiver, [0, 0])[slot] += count
    except Exception:  # noqa: BLE001 - the database finding says what is wrong
        return {}
    finally:
        engine.dispose()
    return {name: (w, f) for name, (w, f) in held.items()}


# --- the web console ----------------------------------------------------------------------


def check_web(config: Config) -> Finding | None:
    """The browser console, when the config has a [web] section: a console nobody can sign
    in to, or whose cookies a browser drops, is a setting to correct before anyone tries."""
    if "web" not in config.model_fields_set:
        return None
    web = config.web
    where = web.base_url
    if not web.email_links and web.sso is None:
        return Finding(
            "web", where, Status.FAILED, "nobody can sign in: email_links = false and no [web.sso]",
            ("set up [web.sso] (docs/web.md), or set email_links = true",),
        )  # fmt: skip
    advice: list[str] = []
    parts = urlsplit(web.base_url)
    if parts.scheme == "http" and not loopback(parts.hostname or ""):
        advice.append(
            "base_url is plain http on a network address: browsers drop the console's "
            "Secure cookies there, so nobody stays signed in; serve it over https behind a "
            "reverse proxy (docs/web.md)"
        )
    found = "sign-in by emailed link" if web.email_links else "sign-in by single sign-on only"
    if web.sso is not None:
        problem = _sso_problem(config)
        if problem:
            return Finding("web", where, Status.FAILED, problem[0], (problem[1], *advice))
        found = f"single sign-on by {web.sso.issuer or 'Entra ID'}" + (
            " and emailed links" if web.email_links else ""
        )
    if advice:
        return Finding("web", where, Status.WARNING, found, tuple(advice))
    return Finding("web", where, Status.OK, found)


def _sso_problem(config: Config) -> tuple[str, str] | None:
    """(what is wrong, what to do) with [web.sso]: its secret, then the provider's discovery
    document, fetched as the console would."""
    import httpx2

    sso = config.web.sso
    assert sso is not None
    try:
        sso.client_secret.resolve("[web.sso] client_secret", config.source)
        url = sso.discovery_url
    except MailbridgeError as exc:
        return first_line(exc), "correct [web.sso] (docs/web.md)"
    try:
        answer = httpx2.get(url, timeout=10.0, follow_redirects=True)
        answer.raise_for_status()
        document = answer.json()
    except Exception as exc:  # noqa: BLE001 - any failure is one line for a person
        return (
            f"the single sign-on provider's discovery document could not be read: "
            f"{first_line(exc)[:160]}",
            f"check [web.sso] tenant_id or issuer, and that this server can reach {url}",
        )
    needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [key for key in needed if not isinstance(document, dict) or key not in document]
    if missing:
        return (
            f"the provider's discovery document lacks {', '.join(missing)}",
            f"check that {url} is an OpenID Connect provider's",
        )
    return None


# --- mailbox and SMTP -------------------------------------------------------------------


def check_mailbox(config: Config) -> Finding:
    from mailbridge.mailbox.factory import open_source
    from mailbridge.mailbox.state import MemoryStateStore

    where = without_password(config.mailbox.url)
    return _look("mailbox", where, lambda: open_source(config, MemoryStateStore()))


# Microsoft 365 accepts 30 messages a minute from one mailbox and refuses the rest.
EXCHANGE_ONLINE_HOSTS = ("smtp.office365.com", "smtp-mail.outlook.com")
EXCHANGE_ONLINE_PER_MINUTE = 30


def check_smtp(config: Config) -> Finding:
    from mailbridge.delivery.transports.factory import open_sender

    where = without_password(config.smtp.url)
    found = _look("smtp", where, lambda: open_sender(config))
    advice = rate_limit_advice(config)
    if not advice or found.status is Status.FAILED:
        return found
    return replace(found, status=Status.WARNING, advice=found.advice + advice)


def rate_limit_advice(config: Config) -> tuple[str, ...]:
    """Exchange Online's limit, unless [smtp] rate_limit_per_minute keeps under it."""
    host = (urlsplit(config.smtp.url).hostname or "").lower()
    limit = config.smtp.rate_limit_per_minute
    if host not in EXCHANGE_ONLINE_HOSTS or 0 < limit <= EXCHANGE_ONLINE_PER_MINUTE:
        return ()
    return (
        f"{host} takes {EXCHANGE_ONLINE_PER_MINUTE} messages a minute: set [smtp] "
        f"rate_limit_per_minute = {EXCHANGE_ONLINE_PER_MINUTE} so mail is paced, not refused",
    )


class _Probeable(Protocol):
    def probe(self) -> Probe: ...

    def close(self) -> None: ...


_WHAT_TO_CHECK = {
    "mailbox": "check [mailbox] url, the login settings and that the server is running",
    "smtp": "check [smtp] url, the login settings and that the server is running",
}


def _look(part: str, where: str, make: Callable[[], _Probeable]) -> Finding:
    """Build the configured transport, probe it and close it; its errors become findings."""
    transport = None
    try:
        transport = make()
        probe = transport.probe()
    except Exception as exc:  # noqa: BLE001 - our errors are written for a person; others too
        # A DeliveryError quotes the server, whose reply may run over several lines.
        written = isinstance(exc, MailbridgeError) and not isinstance(exc, DeliveryError)
        words = str(exc) if written else first_line(exc)
        advice = () if "check [" in words.lower() else (_WHAT_TO_CHECK[part],)
        return Finding(part, where, Status.FAILED, words, advice)
    finally:
        if transport is not None:
            with contextlib.suppress(Exception):  # closing after a failure changes nothing
                transport.close()
    status = Status.WARNING if probe.warnings else Status.OK
    return Finding(part, where, status, probe.found, probe.warnings)
