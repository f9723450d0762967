"""Alerts when mail stops flowing: incidents opened and cleared, one email each way, and
`data_dir/health.json` for the monitoring that must hear when the email itself cannot go.

The daemon holds one `Watch` for its mailbox and tells it what happened: a fetch went
through, the login was refused, it took over from a standby. On every schedule tick it
asks the Watch to `review`: each rule (`_conditions`) is held against the incidents open
in the database. An incident is a row (models.Incident), opened once whichever daemon or
restart sees it first (`open_key`, unique while it is open), its alert queued in the same
transaction; it clears once its condition has been gone for CLEAR_AFTER, with its
all-clear. A condition that comes and goes within that time stays one incident: never a
storm. A takeover is opened and cleared at once: one alert, no all-clear.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailbridge.config import Config
from mailbridge.delivery.courier import SmtpHealth
from mailbridge.delivery.queue import local, queue_mail
from mailbridge.files import private_file, private_folder, private_open
from mailbridge.services import Services
from mailbridge.store.db import insert_row, transaction
from mailbridge.store.locks import this_process
from mailbridge.store.models import Incident, OutboxMessage, OutboxStatus, as_utc

log = logging.getLogger(__name__)

# An open incident clears once its condition has been gone this long: a condition that
# flaps inside it sends nothing new.
CLEAR_AFTER = timedelta(minutes=5)
HEALTH_FILE = "health.json"
# The scope of the outbox's incidents: one outbox per database, whichever mailbox fills it.
OUTBOX_SCOPE = "outbox"


class Kind(StrEnum):
    MAILBOX_LOGIN_REFUSED = "mailbox_login_refused"
    NO_FETCH = "no_fetch"
    SMTP_LOGIN_REFUSED = "smtp_login_refused"
    OUTBOX_STUCK = "outbox_stuck"
    TAKEOVER = "takeover"


@dataclass(frozen=True, slots=True)
class Words:
    what: str  # what is wrong, one line
    advice: str  # what to do


# What each incident says, in its alert email and in `mailbridge check`: never personal data.
WORDS = {
    Kind.MAILBOX_LOGIN_REFUSED: Words(
        "the mail server refuses mailbridge's login to the shared mailbox",
        "the password or the Entra ID client secret in [mailbox] (password_env/password_file, "
        "or [mailbox.oauth] client_secret) has probably expired or been changed: renew it, "
        "put the new one where the config names it and restart mailbridge run. Until then "
        "no email is read; mail waits in the mailbox and nothing is lost",
    ),
    Kind.NO_FETCH: Words(
        "no mail has been fetched from the shared mailbox",
        "mailbridge run is running but cannot read the mailbox (the server unreachable, the "
        "login refused, or the connection hanging): see its log, and mailbridge check",
    ),
    Kind.SMTP_LOGIN_REFUSED: Words(
        "the SMTP server refuses mailbridge's login",
        "the password or the Entra ID client secret in [smtp] has probably expired or been "
        "changed: renew it and restart mailbridge run. Until then nothing is sent; mail waits "
        "in the outbox and nothing is lost",
    ),
    Kind.OUTBOX_STUCK: Words(
        "mail is waiting in the outbox and is not being sent",
        "check that the SMTP server in [smtp] is reachable and accepts mailbridge's login "
        "(mailbridge check), and the log's 'delivery paused' lines",
    ),
    Kind.TAKEOVER: Words(
        "a standby mailbridge has taken the mailbox over",
        "the instance that held it stopped or died: find out why on that machine (its log, "
        "systemctl status mailbridge) and start it again as the new standby",
    ),
}


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule that holds now: what it is, where, since when, and a line for the operator."""

    kind: Kind
    scope: str
    since: datetime
    detail: str = ""


def alert_recipients(config: Config) -> list[str]:
    """[alerts] recipients, and the coordinators unless include_coordinators = false."""
    alerts = config.alerts
    coordinators = [c.email for c in config.coordinators] if alerts.include_coordinators else []
    return list(dict.fromkeys(a.strip().lower() for a in [*alerts.recipients, *coordinators]))


class Watch:
    """What one mailbox's daemon has seen, turned into incidents, alerts and health.json."""

    def __init__(self, services: Services, mailbox: str, clock: Callable[[], datetime]) -> None:
        self.services = services
        self.mailbox = mailbox
        self.clock = clock
        self.holder = this_process()
        self._start: datetime | None = None  # when watching began: no_fetch counts from it
        self.last_fetch: datetime | None = None
        self._refused: tuple[str, datetime] | None = None
        self._takeovers: list[tuple[str | None, datetime]] = []
        self._gone_since: dict[tuple[str, str], datetime] = {}  # open, condition gone
        self._state: tuple[str, datetime] | None = None  # for health.json's "since"
        self._queued = 0  # emails queued by the review under way

    @property
    def start(self) -> datetime:
        if self._start is None:
            self._start = as_utc(self.clock())
        return self._start

    # -- what the daemon tells it -----------------------------------------------------

    def fetched(self, now: datetime) -> None:
        """A pass went through: the mailbox is read, its login works."""
        self.start  # noqa: B018 - watching began no later than now
        self.last_fetch = as_utc(now)
        self._refused = None

    def mailbox_refused(self, detail: str, now: datetime) -> None:
        """The login was refused (or the token endpoint rejected the secret)."""
        self.start  # noqa: B018
        if self._refused is None:
            self._refused = (detail, as_utc(now))

    def took_over(self, previous: str | None, now: datetime) -> None:
        """This daemon took the mailbox over from a standby position (alerted at review)."""
        self._takeovers.append((previous, as_utc(now)))

    # -- the review -------------------------------------------------------------------

    def review(self, now: datetime, smtp: SmtpHealth) -> int:
        """Open what holds, clear what has been gone CLEAR_AFTER, queue their mail, write
        health.json; how many emails it queued (the caller has them delivered)."""
        now = as_utc(now)
        self._queued = 0
        with transaction(self.services.engine) as session:
            open_rows = self._open_incidents(session)
            opened = {(r.kind, r.scope): r for r in open_rows}
            conditions = self._conditions(session, now, smtp, opened)
            holding = {(c.kind.value, c.scope) for c in conditions}
            for condition in conditions:
                self._gone_since.pop((condition.kind.value, condition.scope), None)
                if (condition.kind.value, condition.scope) not in opened:
                    self._open(session, condition, now)
            for row in open_rows:
                if (row.kind, row.scope) not in holding:
                    self._maybe_clear(session, row, now)
            takeovers = list(self._takeovers)
            for previous, at in takeovers:
                self._take_over(session, previous, at)
            still_open = self._open_incidents(session)
        del self._takeovers[: len(takeovers)]  # alerted, now that it is committed
        self._write_health(now, smtp, still_open)
        return self._queued

    def _open_incidents(self, session: Session) -> list[Incident]:
        return list(
            session.exec(
                select(Incident)
                .where(
                    col(Incident.cleared_at).is_(None),
                    col(Incident.scope).in_([self.mailbox, OUTBOX_SCOPE]),
                )
                .order_by(col(Incident.id))
            ).all()
        )

    def _conditions(
        self,
        session: Session,
        now: datetime,
        smtp: SmtpHealth,
        opened: dict[tuple[str, str], Incident],
    ) -> list[Condition]:
        """The rules, each once. An incident left open by an earlier daemon holds until this
        one shows otherwise (a fetch, a send): a restart alone clears nothing."""
        alerts = self.services.config.alerts
        box = self.mailbox
        held: list[Condition] = []

        def was_open(kind: Kind, scope: str = box) -> Incident | None:
            return opened.get((kind.value, scope))

        if self._refused is not None:
            detail, since = self._refused
            held.append(Condition(Kind.MAILBOX_LOGIN_REFUSED, box, since, detail))
        elif (row := was_open(Kind.MAILBOX_LOGIN_REFUSED)) and self.last_fetch is None:
            held.append(Condition(Kind.MAILBOX_LOGIN_REFUSED, box, as_utc(row.started_at)))

        last = self.last_fetch or self.start
        quiet = timedelta(minutes=alerts.no_fetch_minutes)
        if now - last >= quiet or (was_open(Kind.NO_FETCH) and self.last_fetch is None):
            what = "since the service started" if self.last_fetch is None else "since"
            held.append(Condition(Kind.NO_FETCH, box, last, f"nothing fetched {what}"))

        row = was_open(Kind.SMTP_LOGIN_REFUSED)
        sent_since = row is not None and (
            smtp.last_send is not None and as_utc(smtp.last_send) > as_utc(row.started_at)
        )
        if smtp.failing == "login_refused":
            since = as_utc(smtp.failing_since) if smtp.failing_since else now
            held.append(Condition(Kind.SMTP_LOGIN_REFUSED, box, since, smtp.detail))
        elif row is not None and not sent_since:
            held.append(Condition(Kind.SMTP_LOGIN_REFUSED, box, as_utc(row.started_at)))

        oldest = session.exec(
            select(func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status == OutboxStatus.PENDING
            )
        ).one()
        if oldest is not None and now - as_utc(oldest) >= timedelta(
            minutes=alerts.outbox_stuck_minutes
        ):
            waiting = session.exec(
                select(func.count()).where(OutboxMessage.status == OutboxStatus.PENDING)
            ).one()
            held.append(
                Condition(
                    Kind.OUTBOX_STUCK, OUTBOX_SCOPE, as_utc(oldest), f"{waiting} emails waiting"
                )
            )
        return held

    def _open(self, session: Session, condition: Condition, now: datetime) -> None:
        """One incident and its alert, or nothing when another daemon opened it first."""
        try:
            with session.begin_nested():
                incident = self._insert(session, condition)
                self._queue(session, incident, cleared=False, now=now)
        except IntegrityError:
            log.info(
                "incident already open",
                extra={"incident": condition.kind.value, "scope": condition.scope},
            )
            return
        log.warning(
            f"alert: {WORDS[condition.kind].what}",
            extra={
                "incident": incident.id,
                "kind": incident.kind,
                "since": incident.started_at.isoformat(),
                "detail": incident.detail,
            },
        )

    def _insert(
        self, session: Session, condition: Condition, cleared_at: datetime | None = None
    ) -> Incident:
        scope = condition.scope[:300]
        values: dict[str, Any] = {
            "kind": condition.kind.value,
            "scope": scope,
            # Unique while open: a second daemon's insert of the same fails (IntegrityError).
            "open_key": f"{condition.kind.value} {scope}" if cleared_at is None else None,
            "started_at": condition.since,
            "detail": condition.detail[:500],
            "cleared_at": cleared_at,
        }
        return Incident(id=insert_row(session, Incident, **values), **values)

    def _maybe_clear(self, session: Session, row: Incident, now: datetime) -> None:
        key = (row.kind, row.scope)
        gone = self._gone_since.setdefault(key, now)
        if now - gone < CLEAR_AFTER:
            return
        done = session.connection().execute(
            update(Incident)
            .where(col(Incident.id) == row.id, col(Incident.cleared_at).is_(None))
            .values(cleared_at=now, open_key=None)
        )
        self._gone_since.pop(key, None)
        if done.rowcount != 1:  # another daemon cleared it meanwhile, with its all-clear
            return
        self._queue(session, row, cleared=True, now=now)
        log.info(
            f"all clear: {WORDS[Kind(row.kind)].what}",
            extra={"incident": row.id, "kind": row.kind, "scope": row.scope,
                   "lasted": _duration(now - as_utc(row.started_at))},
        )  # fmt: skip

    def _take_over(self, session: Session, previous: str | None, at: datetime) -> None:
        detail = f"took over from {previous}" if previous else "took over"
        condition = Condition(Kind.TAKEOVER, self.mailbox, at, f"{detail} on {self.holder}")
        incident = self._insert(session, condition, cleared_at=at)
        self._queue(session, incident, cleared=False, now=at)
        log.warning(
            f"alert: {WORDS[Kind.TAKEOVER].what}",
            extra={"incident": incident.id, "previous": previous or "unknown"},
        )

    def _queue(self, session: Session, incident: Incident, *, cleared: bool, now: datetime) -> None:
        """The alert (or its all-clear) to the operators, in the transaction that opened (or
        cleared) the incident, under a key that lets it go once."""
        to = alert_recipients(self.services.config)
        if not to:
            return  # health.json and the log say it
        kind = Kind(incident.kind)
        started = as_utc(incident.started_at)
        queued = queue_mail(
            session,
            self.services,
            kind="alert_cleared" if cleared else "alert",
            template="alert_cleared" if cleared else "alert",
            to=to,
            context={
                "kind": kind.value,
                "what": WORDS[kind].what,
                "advice": WORDS[kind].advice,
                "detail": incident.detail,
                "watched": self.mailbox,
                "host": self.holder,
                "since": local(self.services, started),
                "lasted": _duration(now - started),
            },
            idempotency_key=f"{'alert-clear' if cleared else 'alert'}:{incident.id}",
        )
        if queued is not None:
            self._queued += 1

    # -- health.json ------------------------------------------------------------------

    def _write_health(self, now: datetime, smtp: SmtpHealth, incidents: list[Incident]) -> None:
        state = "failing" if incidents else "ok"
        if self._state is None or self._state[0] != state:
            # Failing since the oldest problem began; fine since it cleared (or we began).
            fine_since = self.start if self._state is None else now
            since = min(as_utc(i.started_at) for i in incidents) if incidents else fine_since
            self._state = (state, since)
        entry = {
            "state": state,
            "since": _iso(self._state[1]),
            "last_fetch": _iso(self.last_fetch),
            "last_send": _iso(smtp.last_send),
            "problems": [
                {"kind": i.kind, "since": _iso(as_utc(i.started_at)), "scope": i.scope}
                for i in incidents
            ],
            "written_at": _iso(now),
            "holder": self.holder,
        }
        write_health(self.services.config.storage.data_dir, self.mailbox, entry)


def write_health(data_dir: Path, mailbox: str, entry: dict[str, Any]) -> None:
    """Put one mailbox's entry in health.json: the file is shared by every mailbox served
    from this data folder, so it is rewritten under a lock, whole, by rename (a reader
    never sees half of it), 0600 like every file here."""
    private_folder(data_dir)
    with _locked(data_dir / f".{HEALTH_FILE}.lock"):
        health = read_health(data_dir) or {}
        mailboxes = dict(health.get("mailboxes") or {})
        mailboxes[mailbox] = entry
        failing = any(m.get("state") != "ok" for m in mailboxes.values())
        whole = {
            "state": "failing" if failing else "ok",
            "written_at": entry["written_at"],
            "mailboxes": mailboxes,
        }
        temporary = data_dir / f".{HEALTH_FILE}.{os.getpid()}"
        with private_open(temporary, encoding="utf-8") as out:
            json.dump(whole, out, indent=2, sort_keys=True)
        os.replace(temporary, data_dir / HEALTH_FILE)


def read_health(data_dir: Path) -> dict[str, Any] | None:
    """health.json as written (`mailbridge check` and the web console's /health read it
    here): {"state", "written_at", "mailboxes": {name: {"state", "since", "last_fetch",
    "last_send", "problems": [{"kind", "since", "scope"}], "written_at", "holder"}}};
    None when there is none yet, or it cannot be read as such."""
    try:
        health = json.loads((data_dir / HEALTH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return health if isinstance(health, dict) else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    private_file(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing lets go of the lock


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat(timespec="seconds") if moment else None


def _duration(span: timedelta) -> str:
    """ "2 hours 5 minutes", for a person."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "less than a minute"
