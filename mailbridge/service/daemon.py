"""The service loop: one pass after another, each in this order, then wait for mail.

The pass, in order (`Daemon.run_pass`; docs/architecture.md, "The daemon's pass"):

1. revive   parse workers that died are started again (the batch was parsed here meanwhile)
2. fetch    the inbox in batches: everything on a full scan (start-up, a retry waiting,
            every [mailbox] reconcile_seconds), else what is new
3. ingest   each batch through the pipeline's steps, in one transaction (pipeline/)
4. hand     the committed batch's mail to the courier process, which sends it meanwhile
5. move     each message to Processed or Quarantine, only now that its effect is committed
6. deliver  what is still due, then a round of webhooks (in this process when there is
            no courier)
7. tick     reminders, escalations and digests due now, at most once a [schedule] tick;
            the cases' tally folded; the report's past months counted where they
            changed (console/report_months.py); once a day, at [retention] run_at, the retention
            policy's run, and SQLite's planner statistics; and, in the service, the
            alerts' review (service/alerts.py)

Only the holder of the mailbox's lease runs passes (service/lease.py); another `run` on
the same mailbox waits as its standby, with its schedule tick off, and takes over when the
holder dies or stops. The holder makes sure of its lease before each fetch and each batch,
and every LEASE_CHECK_SECONDS while it waits: a lost lease stops it fetching at once.

Holds no business rule: decisions live in the pipeline, delivery in delivery/, what is due
in deadlines/. Stops cleanly on SIGTERM, finishing the batch in hand.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import metadata
from types import FrameType

from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from mailbridge.config import without_password
from mailbridge.console import report_months
from mailbridge.deadlines import run
from mailbridge.delivery import outbox, webhooks
from mailbridge.delivery.courier import (
    Courier,
    CourierTotals,
    HealthBoard,
    SmtpHealth,
    claimer_for,
    deliver_until_idle,
)
from mailbridge.delivery.transports.base import Sender
from mailbridge.errors import LoginRefused, MailbridgeError, Unreachable, one_line
from mailbridge.mailbox.base import Destination, InboundMail, MailboxSource
from mailbridge.pipeline.outcomes import (
    AlreadyHandled,
    CaseOpened,
    CaseUpdated,
    Failed,
    Handled,
    Outcome,
    Quarantined,
    committed,
)
from mailbridge.pipeline.parse import Limits, Parsed, ParsePool, workers_for
from mailbridge.pipeline.processor import Processor, pending_failures
from mailbridge.privacy import retention
from mailbridge.service.alerts import Watch
from mailbridge.service.lease import (
    LEASE_CHECK_SECONDS,
    LEASE_POLL_SECONDS,
    ONCE,
    describe,
    lease_holder,
    mailbox_lease,
)
from mailbridge.services import Services
from mailbridge.store import tally
from mailbridge.store.db import refresh_statistics
from mailbridge.store.locks import Holder
from mailbridge.store.models import utcnow

log = logging.getLogger(__name__)


# What the database driver raises when the server is away (restarting, unreachable) or,
# on SQLite, locked for longer than the busy timeout: `run` waits it out.
DATABASE_AWAY = (OperationalError, InterfaceError)

# Waits between attempts to reach an unreachable mailbox or database in `mailbridge run`:
# doubling from the first to the longest.
OUTAGE_WAIT_FIRST = 1.0
OUTAGE_WAIT_MAX = 300.0

# Scheduled mails queued per tick at most; a backlog (the first morning after an upgrade, a
# long outage) goes out over the next ticks instead of holding up incoming mail.
TICK_LIMIT = 500


class StopRequested(Exception):
    """Raised out of a blocking wait when SIGTERM/SIGINT arrives."""


class LeaseLost(MailbridgeError):
    """The mailbox's lease ended under us (its database connection broke, its lock file was
    removed): another `run` may be fetching now, so this one stops at once."""

    def __init__(self) -> None:
        super().__init__(
            "stopped: this process lost the mailbox's lease (the database connection ended "
            "or the lock file was removed); what it committed stands. Run it again"
        )


class MailboxHeld(Exception):
    """`run --once` found another `mailbridge run` processing the mailbox."""

    def __init__(self, holder: Holder | None) -> None:
        self.holder = holder
        who = describe(holder) if holder else "another process"
        super().__init__(f"another mailbridge run ({who}) is processing this mailbox; nothing done")


@dataclass
class PassReport:
    cases: int = 0
    updates: int = 0  # replies, chasers, notes, status requests, auto-replies, bounces
    quarantined: int = 0
    duplicates: int = 0
    failed: int = 0
    sent: int = 0
    retried: int = 0
    delivery_failed: int = 0
    scheduled: int = 0  # reminders, escalations and digests queued by the schedule tick
    references: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        if isinstance(outcome, CaseOpened):
            self.cases += 1
            self.references.append(outcome.reference)
        elif isinstance(outcome, CaseUpdated | Handled):
            self.updates += 1
        elif isinstance(outcome, Quarantined):
            self.quarantined += 1
        elif isinstance(outcome, AlreadyHandled):
            self.duplicates += 1
        elif isinstance(outcome, Failed):
            self.failed += 1

    def add_delivery(self, totals: CourierTotals) -> None:
        self.sent += totals.sent
        self.retried += totals.retried
        self.delivery_failed += totals.failed

    @property
    def handled(self) -> int:
        return self.cases + self.updates + self.quarantined + self.duplicates + self.failed


class Daemon:
    def __init__(
        self,
        services: Services,
        source: MailboxSource,
        sender_factory: Callable[[], Sender],
        *,
        deliver: bool = True,
        courier: Courier | None = None,
        parse_pool: ParsePool | None = None,
    ) -> None:
        self.services = services
        self.source = source
        self.sender_factory = sender_factory
        self.deliver_enabled = deliver
        self.courier = courier  # None: deliver in this process, between batches
        self.parse_pool = parse_pool  # None: parse in this process
        self.processor = Processor(services)
        self.stopping = False
        self._waiting = False
        self._healthy = False  # a pass went through since the last outage began
        self._earlier_deliveries: list[CourierTotals] = []  # of couriers that ended early
        self._last_full_scan = 0.0
        self._next_tick = 0.0  # monotonic time of the next schedule tick
        self._statistics_day: date | None = None  # when the planner's statistics were gathered
        self.clock: Callable[[], datetime] = utcnow  # tests set the schedule's "now"
        self.lease = mailbox_lease(services.config, source.name)
        self._holding = False  # the lease is ours: passes may run
        self.watch = Watch(services, source.name, lambda: self.clock())
        self.watching = False  # alerts are the service's: `run --once` raises none
        smtp = services.config.smtp
        self.rate_limit = outbox.RateLimiter(smtp.rate_limit_per_minute)
        # In-process delivery's name on the rows it claims, its lock held while it delivers.
        self.claimer = claimer_for(services.config)
        self.health = courier.health if courier is not None else HealthBoard()

    # -- one pass ---------------------------------------------------------------------

    def run_pass(self, *, full_scan: bool = False) -> PassReport:
        """Steps 1 to 6 of the pass (the module's docstring); the callers tick (step 7)."""
        report = PassReport()
        self._check_lease()
        self._revive_workers()
        batches = self.source.fetch(full_scan=self._full_scan_due(full_scan))
        for batch, parsed in self._parsed_ahead(batches):
            self._check_lease()
            outcomes = self.processor.process_batch(
                [(m.raw, m.received_at) for m in batch],
                parsed=parsed,
                oversizes=[m.oversize for m in batch],
            )
            if self.courier is not None:
                # Hand over first: the courier claims this batch's mail while we move it,
                # before our next batch takes SQLite's write lock again.
                self.deliver(report)
            self._move(batch, outcomes, report)
            if self.courier is None:
                # In-process delivery waits for the move: a slow SMTP server must not hold
                # mail in the inbox.
                self.deliver(report)
            if self.stopping:
                break
        self.deliver(report)
        self.watch.fetched(self.clock())
        if report.handled or report.sent:
            log.info(
                "pass done",
                extra={
                    "cases": report.cases,
                    "updates": report.updates,
                    "quarantined": report.quarantined,
                    "duplicates": report.duplicates,
                    "failed": report.failed,
                    "sent": report.sent,
                },
            )
        return report

    def _revive_workers(self) -> None:
        if self.parse_pool is not None and self.parse_pool.broken:
            # A worker died (killed, out of memory): parsing went on here; back to two cores.
            self.services.engine.dispose()  # no pooled connection may cross into a child
            self.parse_pool.start()
            log.warning("parse workers restarted")

    def _full_scan_due(self, asked: bool) -> bool:
        """The whole inbox, not only what is new: when asked, when a failed message waits
        to be tried again, and every [mailbox] reconcile_seconds."""
        reconcile = self.services.config.mailbox.reconcile_seconds
        full_scan = (
            asked
            or time.monotonic() - self._last_full_scan > reconcile
            or pending_failures(self.services) > 0
        )
        if full_scan:
            self._last_full_scan = time.monotonic()
        return full_scan

    def _move(self, batch: list[InboundMail], outcomes: list[Outcome], report: PassReport) -> None:
        """Only now, after the batch's transaction committed, does mail leave the inbox.

        A message another client moved or deleted meanwhile (a person in Outlook, a second
        daemon) is not an error: what was committed for it stands, and the log says so."""
        moves: dict[Destination, list[str]] = {d: [] for d in Destination}
        for mail, outcome in zip(batch, outcomes, strict=True):
            report.count(outcome)
            if outcome.destination is not None:
                moves[outcome.destination].append(mail.key)
        of_key = {mail.key: outcome for mail, outcome in zip(batch, outcomes, strict=True)}
        for destination, keys in moves.items():
            if keys:
                for key in self.source.move(keys, destination):
                    log.info("message gone before it was moved", extra=committed(of_key[key]))

    def _parsed_ahead(
        self, batches: Iterator[list[InboundMail]]
    ) -> Iterator[tuple[list[InboundMail], Parsed | None]]:
        """Each batch with its parse, the next batch already fetched and parsing meanwhile."""
        pool = self.parse_pool
        ahead: tuple[list[InboundMail], list[Future[Parsed]] | None] | None = None
        for batch in batches:
            futures = (
                pool.submit([m.raw for m in batch], [m.oversize for m in batch])
                if pool is not None
                else None
            )
            if ahead is not None:
                yield ahead[0], pool.result(ahead[1]) if pool is not None else None
                if self.stopping:
                    return  # the batch fetched meanwhile stays in the inbox
            ahead = (batch, futures)
        if ahead is not None:
            yield ahead[0], pool.result(ahead[1]) if pool is not None else None

    # -- the schedule tick ------------------------------------------------------------

    def schedule_tick(self, report: PassReport, *, force: bool = False) -> None:
        """Send the reminders, escalations and digests due now, at most once a tick; a failure
        here is logged and tried again next tick, never the end of the service."""
        if not force and time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.services.config.schedule.tick_seconds
        try:
            done = run.run_due(self.services, self.clock(), limit=TICK_LIMIT)
        except DATABASE_AWAY as exc:  # the next tick tries again
            log.error("schedule tick failed: database unreachable", extra={"error": one_line(exc)})
            return
        except Exception:  # a bug in one tick must not end the service: logged in full
            log.exception("schedule tick failed")
            return
        report.scheduled += done.queued
        if done.queued:
            self.deliver(report)
        self._fold_tally()
        self._count_report_months()
        self._retention()
        self._statistics()
        self.review()

    def review(self) -> None:
        """The alerts' look at what it has seen (service/alerts.py); a failure is logged,
        never the end of the service, and the next tick looks again."""
        if not self.watching:
            return
        try:
            if self.watch.review(self.clock(), self.smtp_health()):
                self.deliver(PassReport())  # the alerts: not held up until the next pass
        except DATABASE_AWAY as exc:
            log.error("alerts review failed: database unreachable", extra={"error": one_line(exc)})
        except Exception:  # a bug here must not end the service: logged in full
            log.exception("alerts review failed")

    def _retention(self) -> None:
        """The retention policy's run, once a day from [retention] run_at (claimed under a
        key, so once across restarts and daemons); a failure is logged, never the end of
        the service, and what it left is erased by tomorrow's run."""
        try:
            retention.run_daily(self.services, self.clock())
        except DATABASE_AWAY as exc:
            log.error("retention run failed: database unreachable", extra={"error": one_line(exc)})
        except Exception:  # a bug here must not end the service: logged in full
            log.exception("retention run failed")

    def _fold_tally(self) -> None:
        """The rows the cases' tally gained since the last tick folded into one per status
        (store/tally.py), so the dashboard's counts stay a sum over a few rows; a failure is
        logged and the next tick folds them."""
        try:
            tally.fold(self.services.engine)
        except DATABASE_AWAY as exc:
            log.error("tally fold failed: database unreachable", extra={"error": one_line(exc)})
        except Exception:  # a bug here must not end the service: logged in full
            log.exception("tally fold failed")

    def _count_report_months(self) -> None:
        """The scrutiny report's past months that are not counted yet, or changed since,
        counted again (console/report_months.py), a couple of seconds' worth a tick so mail
        is not held up; a failure is logged and the next tick counts them. Until then the
        report counts those months live: slower, never wrong."""
        calendar = self.services.calendar
        try:
            counted = report_months.refresh(
                self.services.engine, calendar, calendar.local_date(self.clock())
            )
        except DATABASE_AWAY as exc:
            log.error("report months failed: database unreachable", extra={"error": one_line(exc)})
            return
        except Exception:  # a bug here must not end the service: logged in full
            log.exception("report months failed")
            return
        if counted:
            log.info(
                "report months counted",
                extra={"months": [m.isoformat()[:7] for m in counted]},
            )

    def _statistics(self) -> None:
        """The query planner's statistics gathered afresh once a day (store/db.py), at this
        process's first tick of each council day; a failure is logged and tried tomorrow."""
        today = self.services.calendar.local_date(self.clock())
        if self._statistics_day == today:
            return
        self._statistics_day = today
        try:
            refresh_statistics(self.services.engine)
        except DATABASE_AWAY as exc:
            log.error("statistics failed: database unreachable", extra={"error": one_line(exc)})
        except Exception:  # a bug here must not end the service: logged in full
            log.exception("statistics failed")

    def _wait_seconds(self, poll: float) -> float:
        """Wait for mail at most until the next schedule tick."""
        return max(0.0, min(poll, self._next_tick - time.monotonic()))

    def deliver(self, report: PassReport) -> None:
        if not self.deliver_enabled or self.stopping:
            return
        if self.courier is not None:
            self._revive_courier()
            self.courier.wake()
            return
        totals = CourierTotals()
        try:
            deliver_until_idle(
                self.services.engine,
                self.services.config,
                self.sender_factory,
                self.rate_limit,
                totals,
                lambda: self.stopping,
                claimer=self.claimer,
                health=self.health,
            )
            webhooks.deliver_due(
                self.services.engine, self.services.config, stopping=lambda: self.stopping
            )
        finally:
            self.claimer.release()  # nothing is claimed between deliveries
        report.add_delivery(totals)

    def smtp_health(self) -> SmtpHealth:
        """How delivery is faring, from the courier process or this one's own delivery."""
        return self.health.read()

    def _revive_courier(self) -> None:
        """A delivery process that ended (killed, out of memory) is replaced: otherwise every
        later email would wait in the outbox until someone restarted the service."""
        assert self.courier is not None
        code = self.courier.exitcode
        if code is None:
            return
        log.error("delivery process ended; starting a new one", extra={"exit_code": code})
        self._earlier_deliveries.append(self.courier.totals())
        self.services.engine.dispose()  # no pooled connection may cross into the new child
        self.courier = Courier(self.services.config, health=self.health)
        self.courier.start()

    def _start_workers(self) -> None:
        # No pooled connection may cross into a child process: fork before any is open.
        self.services.engine.dispose()
        if self.parse_pool is not None:
            self.parse_pool.start()
        if self.courier is not None and self.deliver_enabled:
            if self.courier.exitcode is not None:  # it ran while we held the lease before
                self.courier = Courier(self.services.config, health=self.health)
            self.courier.start()

    def _stop_workers(self, report: PassReport | None, *, drain: bool) -> None:
        if self.parse_pool is not None:
            self.parse_pool.close()
        if self.courier is None or not self.deliver_enabled:
            return
        totals = self.courier.finish() if drain else self.courier.stop()
        if report is not None:
            for earlier in [*self._earlier_deliveries, totals]:
                report.add_delivery(earlier)

    # -- once -------------------------------------------------------------------------

    def run_once(self) -> PassReport:
        """Process what waits, deliver what is due, and return (`mailbridge run --once`);
        MailboxHeld when another `run` holds the mailbox's lease."""
        self.lease = mailbox_lease(self.services.config, self.source.name, ONCE)
        if not self.lease.try_acquire():
            raise MailboxHeld(lease_holder(self.services.config, self.source.name))
        self._holding = True
        report: PassReport | None = None
        try:
            self._start_workers()
            try:
                self.source.open()
                try:
                    report = self.run_pass(full_scan=True)
                    self.schedule_tick(report, force=True)
                finally:
                    self.source.close()
            finally:
                self._stop_workers(report, drain=report is not None)
        finally:
            self._release_lease()
        return report

    # -- the lease --------------------------------------------------------------------

    def _check_lease(self) -> None:
        """Raise LeaseLost when the lease we hold ended (nothing to do without one: tests
        that drive passes themselves hold none)."""
        if self._holding and not self.lease.still_held():
            self._holding = False
            raise LeaseLost

    def _release_lease(self) -> None:
        self._holding = False
        self.lease.release()

    def _await_lease(self) -> bool:
        """Take the mailbox's lease, waiting as a standby while another holds it; False when
        stopped first. A standby fetches nothing, sends nothing and ticks nothing."""
        config = self.services.config
        shown: str | None = None  # the holder the log last named
        shown_role = ""  # and what it held the lease for
        away = 0  # attempts in a row that found the database unreachable
        while not self.stopping:
            try:
                if self.lease.try_acquire():
                    self._holding = True
                    if shown is not None and shown_role == ONCE:
                        log.info("run --once finished; the mailbox is ours")
                    elif shown is not None:  # another service held it while we waited
                        log.warning(
                            "took over the mailbox",
                            extra={"mailbox": self.source.name, "previous": shown},
                        )
                        self.watch.took_over(shown, self.clock())  # alerted at the next review
                    return True
                holder = lease_holder(config, self.source.name)
                away = 0
            except (*DATABASE_AWAY, OSError) as exc:  # OSError: the lock file (a full disk)
                holder, away = None, away + 1
                if away & (away - 1) == 0:  # the 1st, 2nd, 4th, 8th … attempt: no flood
                    what = "lock file" if isinstance(exc, OSError) else "database"
                    log.error(
                        f"{what} unreachable; trying again",
                        extra={"error": one_line(exc), "attempt": away},
                    )
            if holder is None:  # the database away, or the holder let go just now
                self._sleep(LEASE_POLL_SECONDS if away else 0.1)
                continue
            if holder.name != shown:
                log.info(
                    f"standby: {holder.name} holds the mailbox", extra={"mailbox": self.source.name}
                )
                shown = holder.name
            shown_role = holder.role
            self._sleep(LEASE_POLL_SECONDS)
        return False

    def _sleep(self, seconds: float) -> None:
        """Sleep, woken by SIGTERM/SIGINT."""
        try:
            self._waiting = True
            if not self.stopping:
                time.sleep(seconds)
        except StopRequested:
            return
        finally:
            self._waiting = False

    # -- forever ----------------------------------------------------------------------

    def run_forever(self) -> None:
        cfg = self.services.config
        poll = cfg.mailbox.poll_seconds
        log.info(
            "started",
            extra={
                "version": _version(),
                "mailbox": without_password(cfg.mailbox.url),
                "smtp": without_password(cfg.smtp.url),
                "database": make_url(cfg.database.url).render_as_string(hide_password=True),
                "parse_workers": self.parse_pool.workers if self.parse_pool else 0,
                "delivery": "courier process" if self.courier else "between batches",
            },
        )
        self.watching = True
        with self._signals():
            while self._await_lease():
                try:
                    self._start_workers()
                    try:
                        self._serve(poll)
                    finally:
                        self._stop_workers(None, drain=False)
                except LeaseLost:
                    log.error(
                        "lease lost: stopped fetching; standing by",
                        extra={"mailbox": self.source.name},
                    )
                finally:
                    self._release_lease()
        log.info("stopped")

    def _serve(self, poll: float) -> None:
        """Serve until stopped. An unreachable mailbox or database (a maintenance window,
        a restart for patching, a network fault at boot), or a refused mailbox login (an
        expired password or client secret: alerted), is waited out, trying again after
        1, 2, 4 … seconds up to OUTAGE_WAIT_MAX, with the schedule tick still run meanwhile;
        it never ends the service, which a supervisor restarting it in a tight loop would
        soon give up on. Mail stays in the inbox until its case is committed."""
        delay = OUTAGE_WAIT_FIRST
        while not self.stopping:
            self._healthy = False
            try:
                self._serve_connected(poll)
                return
            except LoginRefused as exc:  # a person must renew the secret: alert, and wait
                what, error = "mailbox login refused", str(exc)
                self.watch.mailbox_refused(error, self.clock())
                self.review()
            except Unreachable as exc:
                what, error = "mailbox unreachable", str(exc)
            except DATABASE_AWAY as exc:
                what, error = "database unreachable", one_line(exc)
            if self._healthy:  # it had been up: a new outage starts from the beginning
                delay = OUTAGE_WAIT_FIRST
            log.error(
                f"{what}; trying again",
                extra={"error": error, "retry_in_seconds": delay},
            )
            self._pause(delay)
            delay = min(delay * 2, OUTAGE_WAIT_MAX)

    def _pause(self, seconds: float) -> None:
        """Sleep, woken by SIGTERM/SIGINT, running the schedule tick when it is due."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            self._check_lease()
            self.schedule_tick(PassReport())
            try:
                self._waiting = True
                time.sleep(max(0.05, min(left, self._wait_seconds(left), LEASE_CHECK_SECONDS)))
            except StopRequested:
                return
            finally:
                self._waiting = False

    def _serve_connected(self, poll: float) -> None:
        self.source.open()
        try:
            self.schedule_tick(self.run_pass(full_scan=True), force=True)
            self._healthy = True
            while not self.stopping:
                try:
                    self._wait_for_mail(poll)
                except StopRequested:
                    break
                if not self.stopping:
                    self.schedule_tick(self.run_pass())
        finally:
            self.source.close()

    def _wait_for_mail(self, poll: float) -> None:
        """Until mail may have come, the poll or the next tick is due, in slices short
        enough that a lost lease is seen within LEASE_CHECK_SECONDS."""
        deadline = time.monotonic() + self._wait_seconds(poll)
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            try:
                self._waiting = True
                woken = self.source.wait(min(left, LEASE_CHECK_SECONDS))
            finally:
                self._waiting = False
            self._check_lease()
            if woken:
                return

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        self.stopping = True
        if self._waiting:
            raise StopRequested

    @contextmanager
    def _signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _version() -> str:
    try:
        return metadata.version("mailbridge")
    except metadata.PackageNotFoundError:  # a checkout run without installing
        return "unknown"


def build(services: Services, *, courier: bool = True) -> Daemon:
    """Wire the configured mailbox and sender to the pipeline, with delivery and parsing in
    processes of their own."""
    from mailbridge.delivery.transports.factory import open_sender
    from mailbridge.mailbox.factory import open_source
    from mailbridge.mailbox.state import DbStateStore

    config = services.config
    source = open_source(config, DbStateStore(services.engine))
    return Daemon(
        services,
        source,
        lambda: open_sender(config),
        courier=Courier(config) if courier else None,
        parse_pool=ParsePool(
            workers_for(config.mailbox.parse_workers), Limits.of(config), config.storage.data_dir
        ),
    )
