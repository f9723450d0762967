"""Who looked at what (#14, item 3), through the real command line on SQLite and PostgreSQL.

Each access command leaves exactly one audit record naming who ran it (the server account,
`--as` a coordinator, or the coordinator an `os_user` maps to), from where (`cli`, the
account and host) and what they saw; a claim that is not a coordinator is refused before
anything is read or changed; `mailbridge audit` reads the trail, and that is recorded too.
"""

from __future__ import annotations

import csv
import io
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select
from typer.testing import CliRunner, Result

from mailbridge.cli.app import app
from mailbridge.console.filters import CaseFilter
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.privacy import access, audit
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import AuditRecord, Event
from tests.factories import add_person, fixture_bytes, ok_lines
from tests.helpers.cli import ACCOUNT, CLI_ACTOR, ORIGIN, one_line_error
from tests.helpers.council import (
    ANN,
    GARETH,
    PRIYA,
    REF,
    SAM,
    SUPPORT,
    Council,
    build_council,
    reply,
    write_council_config,
)

pytestmark = pytest.mark.usefixtures("fixed_clock")

runner = CliRunner()
OS_ACTOR = f"os:{ACCOUNT}"
DUTY = "duty.coordinator@example.gov.uk"  # a second coordinator
STRANGER = "the.director@example.gov.uk"  # in no directory


@dataclass
class Desk:
    config: Path
    council: Council
    tmp: Path

    def cli(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        """One command; the global options (--as) go before it, as a person types them."""
        split = args.index("--") if "--" in args else 0
        before, command = args[:split], args[split + 1 :] if split else args
        return runner.invoke(
            app,
            [*before, *command, "--config", str(self.config)],
            env={"COLUMNS": "300", "MAILBRIDGE_AS": None, **(env or {})},
        )

    def audit(self) -> list[AuditRecord]:
        with Session(self.council.engine) as session:
            return list(session.exec(select(AuditRecord).order_by(col(AuditRecord.id))))

    def one_new_record(self, before: int) -> AuditRecord:
        rows = self.audit()
        assert len(rows) == before + 1, [(r.action, r.detail) for r in rows[before:]]
        return rows[-1]

    def map_os_user(self, account: str, email: str = SUPPORT) -> None:
        """`os_user = account` on the coordinator at `email` in config.toml."""
        text = self.config.read_text()
        line = f'email = "{email}"\n'
        assert line in text
        self.config.write_text(text.replace(line, f'{line}os_user = "{account}"\n'))


@pytest.fixture
def desk(tmp_path: Path, migrated_db_url: str) -> Iterator[Desk]:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    add_person(engine, "coordinator", "Duty Coordinator", DUTY)
    config = write_council_config(
        tmp_path,
        migrated_db_url,
        f"""\
[[coordinators]]
name = "Duty Coordinator"
email = "{DUTY}"
[[service_areas]]
name = "Highways"
directorate = "Environment and Transport"
keywords = ["pothole", "road", "pavement"]
""",
    )
    council.open_pothole_case()
    yield Desk(config, council, tmp_path)
    engine.dispose()


# --- each access, one record ----------------------------------------------------------

PERIOD = ("--from", "2026-11-01", "--to", "2026-11-30")
# (command, action, case reference, detail); {out} is a file in the test's folder.
ACCESSES = [
    (("case", "show", REF.lower()), "case.show", REF, ""),
    (
        ("cases", "list", "--status", "new", "--member", "Jane"),
        "cases.list",
        None,
        "filter: status=new member=Jane; page 1 (50 a page); 1 case shown",
    ),
    (
        ("cases", "list", "--format", "csv", "--limit", "10", "--page", "2"),
        "cases.list",
        None,
        "filter: every case; page 2 (10 a page); 0 cases shown",
    ),
    (("dashboard", "--newest", "5"), "dashboard", None, "counts and the newest 5; 1 case shown"),
    (
        ("export", "--output", "{out}.xlsx", "--overdue"),
        "export",
        None,
        "filter: overdue; 0 cases; xlsx to {out}.xlsx",
    ),
    (
        ("export", "--format", "csv", "--output", "{out}", "--search", "pothole"),
        "export",
        None,
        "filter: search=pothole; 1 case; csv to {out}",
    ),
    (
        ("report", *PERIOD),
        "report",
        None,
        "scrutiny report 2026-11-01 to 2026-11-30; table on screen",
    ),
    (
        ("report", *PERIOD, "--compare-previous", "--format", "html", "--output", "{out}"),
        "report",
        None,
        "scrutiny report 2026-11-01 to 2026-11-30, with the period before; html to {out}",
    ),
    (
        ("quarantine", "list", "--all"),
        "quarantine.list",
        None,
        "waiting and resolved; 0 messages shown",
    ),
    (("addresses", "list"), "addresses.list", None, "bounced addresses: 0 shown"),
    (
        ("audit", "--case", REF.lower(), "--since", "2026-11-01"),
        "audit.read",
        REF,
        "filter: case=MQ-2026-00001 since=2026-11-01T00:00:00+00:00; 0 records; table on screen",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("command", "action", "reference", "detail"), ACCESSES)
def test_each_access_command_leaves_one_record_naming_the_account(
    desk: Desk, command: tuple[str, ...], action: str, reference: str | None, detail: str
) -> None:
    out = str((desk.tmp / "out").resolve())
    before = len(desk.audit())
    result = desk.cli(*(part.replace("{out}", out) for part in command))
    assert result.exit_code == 0, result.output
    record = desk.one_new_record(before)
    assert (record.actor, record.actor_id, record.channel, record.origin) == (
        OS_ACTOR,
        None,
        "cli",
        ORIGIN,
    )
    assert (record.action, record.case_reference) == (action, reference)
    assert record.detail == detail.replace("{out}", out)


def test_case_show_as_a_coordinator_is_recorded_as_them(desk: Desk) -> None:
    before = len(desk.audit())
    ok_lines(desk.cli("--as", SUPPORT.upper(), "--", "case", "show", REF))
    record = desk.one_new_record(before)
    assert (record.actor, record.actor_id, record.channel, record.origin) == (
        SUPPORT,
        desk.council.person_id(SUPPORT),
        "cli",
        ORIGIN,
    )
    # MAILBRIDGE_AS says the same as --as.
    ok_lines(desk.cli("case", "show", REF, env={"MAILBRIDGE_AS": DUTY}))
    assert desk.one_new_record(before + 1).actor == DUTY


def test_a_change_names_the_actor_as_shown(desk: Desk) -> None:
    ok_lines(desk.cli("--as", DUTY, "--", "case", "note", REF, "Rang the resident back."))
    ok_lines(desk.cli("case", "pause", REF, "--reason", "awaiting photos"))
    [note] = desk.council.events(kind="note")
    [paused] = desk.council.events(kind="paused")
    assert note.actor == f"{DUTY} (cli, {ORIGIN})"
    assert paused.actor == CLI_ACTOR == f"os:{ACCOUNT} (cli, {ORIGIN})"
    # The case's timeline shows who.
    shown = "\n".join(ok_lines(desk.cli("case", "show", REF)))
    assert f"{DUTY} (cli, {ORIGIN})" in shown


def test_an_actor_shown_fits_the_events_column() -> None:
    long = Actor("a" * 240 + "@example.gov.uk", Channel.WEB, "203.0.113.9 " + "x" * 300)
    assert len(long.shown) == 254 and long.shown.endswith(")")
    assert Actor("c@x.gov.uk", Channel.CLI).shown == "c@x.gov.uk (cli)"


def test_saving_attachments_is_recorded_with_the_files(desk: Desk) -> None:
    add_person(desk.council.engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    [reference] = desk.council.deliver(
        fixture_bytes("member_enquiry_with_photo_and_pdf.eml")
    ).references
    target = desk.tmp / "saved"
    before = len(desk.audit())
    saving = ("case", "attachments", reference, "--save", str(target))
    ok_lines(desk.cli("--as", SUPPORT, "--", *saving))
    record = desk.one_new_record(before)
    assert (record.actor, record.action, record.case_reference) == (
        SUPPORT,
        "attachments.save",
        reference,
    )
    assert record.detail.startswith(f"2 attachments saved to {target.resolve()}: IMG_4521.jpg, ")
    [event] = desk.council.events(reference, kind="attachments_saved")
    assert event.actor == f"{SUPPORT} (cli, {ORIGIN})" and event.detail == record.detail
    # Refused (the files are there): nothing read, nothing recorded.
    one_line_error(desk.cli("case", "attachments", reference, "--save", str(target)), 1, "--force")
    assert len(desk.audit()) == before + 1


def test_quarantine_show_is_recorded_with_the_case_it_points_at(desk: Desk) -> None:
    desk.council.assign(PRIYA)
    [notice] = [m for m in desk.council.new_mail() if PRIYA in str(m["To"])]
    desk.council.deliver(reply(notice, ANN, "Our survey is attached.", name="Ann Other"))
    [item] = desk.council.quarantined()
    before = len(desk.audit())
    shown = "\n".join(ok_lines(desk.cli("quarantine", "show", str(item.id))))
    assert ANN in shown
    record = desk.one_new_record(before)
    assert (record.actor, record.action, record.case_reference) == (
        OS_ACTOR,
        "quarantine.show",
        REF,
    )
    assert record.detail == f"quarantined message {item.id} (not_party_to_case)"
    one_line_error(desk.cli("quarantine", "show", "999"), 1, "no quarantined message has id 999")
    assert len(desk.audit()) == before + 1
    # Accepting it names the coordinator on the case.
    ok_lines(desk.cli("--as", SUPPORT, "--", "quarantine", "accept", str(item.id)))
    [accepted] = desk.council.events(kind="quarantine_accepted")
    assert accepted.actor == f"{SUPPORT} (cli, {ORIGIN})"


def test_quarantine_release_lets_a_message_go_once_as_the_coordinator(desk: Desk) -> None:
    desk.council.assign(PRIYA)
    [notice] = [m for m in desk.council.new_mail() if PRIYA in str(m["To"])]
    desk.council.deliver(reply(notice, ANN, "Our survey is attached.", name="Ann Other"))
    [item] = desk.council.quarantined()
    shown = ok_lines(desk.cli("quarantine", "show", str(item.id)))
    assert f"  Case       {REF}" in shown and f"  From: Ann Other <{ANN}>" in shown
    assert "Our survey is attached." in shown
    before = len(desk.audit())
    lines = ok_lines(desk.cli("--as", SUPPORT, "--", "quarantine", "release", str(item.id)))
    assert lines == [f"message {item.id} released; nothing was done with it"]
    record = desk.one_new_record(before)
    assert (record.actor, record.action, record.case_reference, record.detail) == (
        SUPPORT,
        "quarantine.release",
        REF,
        f"quarantined message {item.id} (not_party_to_case) released",
    )
    assert desk.council.quarantined() == []
    again = desk.cli("quarantine", "release", str(item.id))
    one_line_error(again, 1, f"quarantined message {item.id} was already released")
    one_line_error(desk.cli("quarantine", "accept", str(item.id)), 1, "was already released")
    assert len(desk.audit()) == before + 1


@pytest.mark.parametrize("what", ["export", "report"])
def test_a_file_whose_access_cannot_be_recorded_is_not_kept(desk: Desk, what: str) -> None:
    """No audit table to write to (a database an administrator broke): the export or
    report is written, its record fails, and the file goes with the command."""
    engine = desk.council.engine
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE audit"))
    out = desk.tmp / f"{what}.csv"
    actor = Actor(SUPPORT, Channel.CLI, ORIGIN)
    calendar = desk.council.services.calendar
    with pytest.raises(DBAPIError):
        if what == "export":
            access.export(engine, CaseFilter(limit=None), out, "csv", calendar, actor)
        else:
            period = (date(2026, 11, 1), date(2026, 11, 30))
            access.report(engine, calendar, period, "csv", out, actor)
    assert not out.exists()


# --- claims that are not proofs -------------------------------------------------------

REFUSED = [
    ("case", "show", REF),
    ("cases", "list"),
    ("dashboard",),
    ("export", "--output", "{out}"),
    ("report", *PERIOD, "--format", "csv", "--output", "{out}"),
    ("audit",),
    ("quarantine", "list"),
    ("case", "note", REF, "Noted."),
    ("case", "status", REF, "in_progress"),
    ("case", "attachments", REF, "--save", "{out}"),
    ("case", "assign", REF, "--lead", SAM),
    ("calendar", "recompute"),
    # Commands that name no one refuse a false claim too.
    ("quarantine", "retry", "1"),
    ("addresses", "list"),
    ("schedule", "run-due", "--no-deliver"),
]


@pytest.mark.parametrize("claimed", [STRANGER, SAM, "not an address"])
def test_an_as_that_is_not_a_coordinator_is_refused_and_nothing_happens(
    desk: Desk, claimed: str
) -> None:
    out = desk.tmp / "out"
    audit_before, events_before = len(desk.audit()), desk.council.count(Event)
    for command in REFUSED:
        result = desk.cli("--as", claimed, "--", *(p.replace("{out}", str(out)) for p in command))
        line = one_line_error(result, 1, f"--as {claimed}: not a coordinator (coordinators are")
        assert result.exit_code == UserError.exit_code == 1, (command, line)
    assert len(desk.audit()) == audit_before
    assert desk.council.count(Event) == events_before
    assert not out.exists()
    assert desk.council.case().status == "new"


def test_a_coordinator_added_to_config_counts_before_the_service_restarts(desk: Desk) -> None:
    """The config file is the source of coordinators; the directory mirrors it only when the
    service starts, and must not make a new coordinator wait for that."""
    newcomer = "new.coordinator@example.gov.uk"
    desk.config.write_text(
        desk.config.read_text() + f'[[coordinators]]\nname = "New"\nemail = "{newcomer}"\n'
    )
    before = len(desk.audit())
    ok_lines(desk.cli("--as", newcomer, "--", "case", "show", REF))
    record = desk.one_new_record(before)
    assert (record.actor, record.actor_id) == (newcomer, None)


def test_logname_does_not_change_who_is_recorded(desk: Desk) -> None:
    """LOGNAME and USER are whatever the caller sets; the account comes from the uid. Even a
    coordinator mapped to the claimed name is not reached through them."""
    desk.map_os_user("the.director")
    spoof = {"LOGNAME": "the.director", "USER": "the.director", "USERNAME": "the.director"}
    before = len(desk.audit())
    ok_lines(desk.cli("case", "show", REF, env=spoof))
    assert desk.one_new_record(before).actor == OS_ACTOR
    ok_lines(desk.cli("case", "note", REF, "A note.", env=spoof))
    [note] = desk.council.events(kind="note")
    assert note.actor == CLI_ACTOR


def test_a_mapped_os_user_acts_as_their_coordinator(desk: Desk) -> None:
    desk.map_os_user(ACCOUNT)
    before = len(desk.audit())
    ok_lines(desk.cli("case", "show", REF))
    record = desk.one_new_record(before)
    assert (record.actor, record.actor_id) == (SUPPORT, desk.council.person_id(SUPPORT))
    ok_lines(desk.cli("case", "note", REF, "Mapped."))
    assert desk.council.events(kind="note")[0].actor == f"{SUPPORT} (cli, {ORIGIN})"
    # Their own address with --as is them; another coordinator's is refused.
    ok_lines(desk.cli("--as", SUPPORT, "--", "case", "show", REF))
    one_line_error(
        desk.cli("--as", DUTY, "--", "case", "show", REF),
        1,
        f"--as {DUTY}: this server account ({ACCOUNT}) belongs to {SUPPORT}",
    )
    assert len(desk.audit()) == before + 2


def test_an_account_linked_to_two_coordinators_names_neither(desk: Desk) -> None:
    desk.map_os_user(ACCOUNT)
    desk.map_os_user(ACCOUNT, DUTY)
    before = len(desk.audit())
    one_line_error(
        desk.cli("case", "show", REF),
        1,
        f"this server account ({ACCOUNT}) is the os_user of 2 coordinators ({SUPPORT}, {DUTY})",
    )
    assert len(desk.audit()) == before


# --- reading the audit ----------------------------------------------------------------


def _plant(desk: Desk, at: datetime, actor: str, action: str, ref: str | None, detail: str) -> None:
    with Session(desk.council.engine) as session:
        audit.record(
            session,
            Actor(actor, Channel.WEB, "203.0.113.9"),
            action,
            case_reference=ref,
            detail=detail,
            at=at,
        )
        session.commit()


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_the_audit_reads_by_case_actor_and_day_and_records_its_reading(desk: Desk) -> None:
    _plant(desk, datetime(2026, 7, 1, 22, 30, tzinfo=UTC), SUPPORT, "case.show", REF, "")
    # 00:30 on 2 July in London (summer time): on the council's 2 July.
    _plant(desk, datetime(2026, 7, 1, 23, 30, tzinfo=UTC), DUTY, "case.show", REF, "")
    _plant(desk, datetime(2026, 7, 3, 9, 0, tzinfo=UTC), DUTY, "export", None, "=HYPERLINK(1)")
    wanted = ok_lines(desk.cli("audit", "--since", "2026-07-02", "--actor", DUTY))
    table = "\n".join(wanted)
    assert "2 audit records" in table and SUPPORT not in table
    assert "2026-07-01 23:30:00" in table and "2026-07-03 09:00:00" in table
    by_case = _csv(desk.cli("audit", "--case", REF, "--format", "csv").stdout)
    assert by_case[0] == list(access.AUDIT_HEADINGS)
    assert [row[:7] for row in by_case[1:]] == [
        ["2026-07-01 22:30:00", SUPPORT, "web", "203.0.113.9", "case.show", REF, ""],
        ["2026-07-01 23:30:00", DUTY, "web", "203.0.113.9", "case.show", REF, ""],
    ]
    moment = _csv(desk.cli("audit", "--since", "2026-07-03T08:59:00Z", "--format", "csv").stdout)
    assert [row[4] for row in moment[1:]] == ["export", "audit.read", "audit.read"]
    assert moment[1][6] == "'=HYPERLINK(1)"  # a spreadsheet shows it, runs nothing
    readings = [r for r in desk.audit() if r.action == "audit.read"]
    assert [r.detail for r in readings] == [
        f"filter: actor={DUTY} since=2026-07-01T23:00:00+00:00; 2 records; table on screen",
        f"filter: case={REF}; 2 records; csv on screen",
        "filter: since=2026-07-03T08:59:00+00:00; 3 records; csv on screen",
    ]


def _plant_through(desk: Desk, at: datetime, actor: str, channel: Channel, action: str) -> None:
    with Session(desk.council.engine) as session:
        audit.record(session, Actor(actor, channel, "here"), action, at=at)
        session.commit()


def _actions(desk: Desk, *args: str) -> list[tuple[str, str, str]]:
    """(when, channel, action) of each record `mailbridge audit ARGS` lists, as its CSV."""
    result = desk.cli("audit", *args, "--format", "csv")
    assert result.exit_code == 0, result.output
    return [(row[0], row[2], row[4]) for row in _csv(result.stdout)[1:]]


def test_the_audit_filters_by_action_door_and_end(desk: Desk) -> None:
    july = ("--since", "2026-07-01", "--until", "2026-07-31")  # not the readings themselves
    for at, who, channel, action in (
        (datetime(2026, 7, 1, 9, 0, tzinfo=UTC), SUPPORT, Channel.WEB, "sign-in"),
        (datetime(2026, 7, 1, 10, 0, tzinfo=UTC), "unknown", Channel.WEB, "sign-in failed"),
        # 23:30 UTC on 1 July is 00:30 on the council's 2 July (summer time).
        (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), DUTY, Channel.CLI, "export"),
        (datetime(2026, 7, 3, 9, 0, tzinfo=UTC), SUPPORT, Channel.API, "case.show"),
    ):
        _plant_through(desk, at, who, channel, action)
    assert _actions(desk, *july, "--action", "sign-in failed") == [
        ("2026-07-01 10:00:00", "web", "sign-in failed")
    ]
    both = _actions(desk, *july, "--action", "sign-in", "--action", "EXPORT")
    assert [a for _, _, a in both] == ["sign-in", "export"]
    assert [c for _, c, _ in _actions(desk, *july, "--channel", "web")] == ["web", "web"]
    assert [a for _, _, a in _actions(desk, *july, "--channel", "api")] == ["case.show"]
    assert [a for _, _, a in _actions(desk, "--until", "2026-07-01")] == [
        "sign-in",
        "sign-in failed",
    ]
    # A moment: the records before it.
    assert [a for _, _, a in _actions(desk, "--until", "2026-07-01T10:00:00Z")] == ["sign-in"]
    assert [a for _, _, a in _actions(desk, "--since", "2026-07-02", "--until", "2026-07-02")] == [
        "export"
    ]
    assert _actions(desk, *july, "--action", "no such action") == []
    readings = [r.detail for r in desk.audit() if r.action == "audit.read"]
    assert readings[0] == (
        "filter: since=2026-06-30T23:00:00+00:00 until=2026-07-31T23:00:00+00:00 "
        "action=sign-in failed; 1 record; csv on screen"
    )
    assert readings[2].startswith(
        "filter: since=2026-06-30T23:00:00+00:00 until=2026-07-31T23:00:00+00:00 channel=web;"
    )


def test_the_audit_written_to_a_file_is_private_and_recorded(desk: Desk) -> None:
    _plant(desk, datetime(2026, 7, 1, 9, 0, tzinfo=UTC), SUPPORT, "case.show", REF, "")
    out = desk.tmp / "reports" / "audit.csv"
    lines = ok_lines(desk.cli("audit", "--format", "csv", "--output", str(out)))
    assert lines == [f"1 audit record written to {out}"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert _csv(out.read_text(encoding="utf-8-sig"))[1][1] == SUPPORT
    [reading] = [r for r in desk.audit() if r.action == "audit.read"]
    assert reading.detail == f"filter: every record; 1 record; csv to {out.resolve()}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--since", "yesterday"), "--since 'yesterday' is not a date or a moment"),
        (("--since", "2026-13-01"), "write 2026-12-01 or 2026-12-01T09:30:00Z"),
        (("--output", "x.csv"), "--output writes CSV: add --format csv"),
        (("--format", "xml"), None),
        (("--channel", "email"), None),
        (("--until", "soon"), "--until 'soon' is not a date or a moment"),
        (("--since", "2026-07-02", "--until", "2026-07-01"), "--until must come after --since"),
    ],
)
def test_a_bad_audit_option_is_one_line_and_reads_nothing(
    desk: Desk, args: tuple[str, ...], says: str | None
) -> None:
    before = len(desk.audit())
    result = desk.cli("audit", *args)
    if says is None:
        assert result.exit_code == 2 and "Traceback" not in result.output
    else:
        one_line_error(result, 1, says)
    assert len(desk.audit()) == before


LONDON = WorkingCalendar()  # Europe/London


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        (None, None),
        ("  ", None),
        ("2026-12-02", datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),  # GMT
        ("2026-07-02", datetime(2026, 7, 1, 23, 0, tzinfo=UTC)),  # BST: local midnight
        ("20260702", datetime(2026, 7, 1, 23, 0, tzinfo=UTC)),
        ("2026-07-02T09:30", datetime(2026, 7, 2, 9, 30, tzinfo=UTC)),  # no zone: UTC
        ("2026-07-02T09:30:00Z", datetime(2026, 7, 2, 9, 30, tzinfo=UTC)),
        ("2026-07-02T09:30:00+01:00", datetime(2026, 7, 2, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_is_a_local_day_or_a_moment(text: str | None, moment: datetime | None) -> None:
    assert access.since_moment(text, LONDON) == moment


@pytest.mark.parametrize("text", ["yesterday", "2026-02-30", "02/12/2026", "2026-12-02 25:00"])
def test_since_refuses_what_is_neither(text: str) -> None:
    with pytest.raises(UserError, match=r"^--since .* is not a date or a moment: write "):
        access.since_moment(text, LONDON)


# --- append only ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# An UPDATE, DELETE or TRUNCATE of the audit, however written: the ORM or Core on the model or
# its table, or SQL text.
CHANGES_AUDIT = re.compile(
    r"\b(update|delete)\(\s*AuditRecord\b"
    r"|AuditRecord\.__table__\.(update|delete)\("
    r"|\.delete\(\s*AuditRecord\b"
    r"|query\(\s*AuditRecord\s*\)[^\n]*\.(update|delete)\("
    r"|\bUPDATE\s+\"?audit\"?\s+SET\b"
    r"|\bDELETE\s+FROM\s+\"?audit\b"
    r"|\bTRUNCATE(\s+TABLE)?\s+\"?audit\b",
    re.IGNORECASE,
)


def _sources() -> Iterator[tuple[Path, str]]:
    for folder in ("mailbridge", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path, path.read_text(encoding="utf-8")


def test_no_code_updates_or_deletes_audit_records() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path, text in _sources()
        for match in CHANGES_AUDIT.finditer(text)
    ]
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        "session.execute(delete(AuditRecord).where(AuditRecord.at < cutoff))",
        "session.execute(update(AuditRecord).values(detail=''))",
        "conn.execute(AuditRecord.__table__.delete())",
        'conn.exec_driver_sql("DELETE FROM audit WHERE at < %s")',
        'text("TRUNCATE TABLE audit")',
        "text('update audit set detail = null')",
        "session.query(AuditRecord).filter(AuditRecord.id == 1).delete()",
    ],
)
def test_the_append_only_check_finds_a_change(line: str) -> None:
    assert CHANGES_AUDIT.search(line)


@pytest.mark.parametrize(
    "line",
    [
        "session.execute(delete(Message).where(Message.case_id == case.id))",
        'text("UPDATE message SET body_text = NULL")',
        "session.delete(record)",
        "# nothing may update audit records",
    ],
)
def test_the_append_only_check_leaves_other_tables_alone(line: str) -> None:
    """What erasure and retention write must pass: deleting other rows is theirs to do."""
    assert not CHANGES_AUDIT.search(line)


def test_on_sqlite_the_database_itself_refuses_to_change_the_audit(tmp_path: Path) -> None:
    """SQLite has no roles to refuse UPDATE and DELETE to; migration 0007's triggers do."""
    engine = ensure_database(f"sqlite:///{tmp_path / 'audit.db'}")
    with Session(engine) as session:
        audit.record(session, audit.SERVICE, "retention.run", detail="nothing due")
        session.commit()
    for statement in ("UPDATE audit SET detail = ''", "DELETE FROM audit"):
        with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement))
    with Session(engine) as session:
        [kept] = session.exec(select(AuditRecord)).all()
        assert kept.detail == "nothing due"
    engine.dispose()


def test_attachments_that_cannot_all_be_saved_leave_no_file_unrecorded(desk: Desk) -> None:
    """A save that fails half way (a folder where a file goes) keeps none of its files:
    nothing leaves mailbridge without its audit record."""
    add_person(desk.council.engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    [reference] = desk.council.deliver(
        fixture_bytes("member_enquiry_with_photo_and_pdf.eml")
    ).references
    first = desk.tmp / "first"
    ok_lines(desk.cli("case", "attachments", reference, "--save", str(first)))
    names = sorted(p.name for p in first.iterdir())
    assert len(names) == 2 and "IMG_4521.jpg" in names
    target = desk.tmp / "saved"
    [other] = [n for n in names if n != "IMG_4521.jpg"]
    (target / other).mkdir(parents=True)
    before = len(desk.audit())
    saving = ("case", "attachments", reference, "--save", str(target), "--force")
    assert desk.cli(*saving).exit_code != 0
    assert not (target / "IMG_4521.jpg").exists()
    assert len(desk.audit()) == before
