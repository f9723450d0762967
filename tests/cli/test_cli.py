"""The `mailbridge` command as a person uses it, on the embedded default.

Each home is a temp folder with a config.toml (relative paths, as in scripts/demo), a
SQLite database, a Maildir mailbox and a Maildir outbox. Commands run in-process through
Typer's CliRunner; one check runs `python -m mailbridge` in a real process. We assert the
exit code and the text a person reads: tables, one-line errors, never a traceback.
"""

from __future__ import annotations

import logging
import mailbox
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import typer
from sqlalchemy.exc import OperationalError
from typer.testing import Result

from mailbridge.cli import context
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.mailbox.maildir import maildir_drop
from tests.helpers.cli import CONFIG, invoke, ok, one_line_error, rows
from tests.helpers.clock import FIXED_NOW, clock_at
from tests.helpers.mail import large_attachment

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
SAMPLE_MAIL = sorted((SAMPLES / "mail").glob("*.eml"))
REFERENCE = re.compile(r"\bMQ-(\d{4})-(\d{5})\b")
NOT_REGISTERED = "is not a registered member, delegate, officer or coordinator"


@pytest.fixture(autouse=True)
def _no_stray_handlers() -> Iterator[None]:
    """Every test leaves the root logger as it found it (the helper restores after `run`)."""
    before = logging.getLogger().handlers[:]
    yield
    assert logging.getLogger().handlers == before


@dataclass
class Home:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def mailbox(self) -> Path:
        return self.root / "mailbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def cli(self, *args: str, width: int = 300) -> Result:
        return invoke(*args, "--config", str(self.config), width=width)

    def drop(self, *raws: bytes) -> None:
        """The MTA delivers the mail now, on the test's clock (the file time is its receipt)."""
        for raw in raws:
            maildir_drop(self.mailbox, raw, datetime.now(UTC))

    def folder(self, name: str | None) -> int:
        """Messages in the inbox (None) or in a folder such as Processed."""
        box = mailbox.Maildir(self.mailbox, create=False)
        if name is None:
            return len(box)
        return len(box.get_folder(name)) if name in box.list_folders() else 0

    def sent(self) -> list[EmailMessage]:
        if not self.outbox.exists():
            return []
        box = mailbox.Maildir(self.outbox, create=False)
        return [
            message_from_bytes(box.get_bytes(key), policy=policy.default)  # type: ignore[misc]
            for key in box.iterkeys()
        ]


def new_home(root: Path) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    return Home(root)


BRACKETED_SUBJECT = "[urgent] Flooded gully, Station Road [/photos]"


def bracketed_enquiry() -> bytes:
    """A member's subject with text rich would read as markup: it must print as written."""
    msg = EmailMessage()
    msg["From"] = "Cllr David Okafor <david.okafor@example.gov.uk>"
    msg["To"] = "enquiries@example.gov.uk"
    msg["Subject"] = BRACKETED_SUBJECT
    msg["Date"] = "Wed, 25 Nov 2026 08:10:00 +0000"
    msg["Message-ID"] = "<okafor-gully@mail.example.gov.uk>"
    msg.set_content("The gully outside the station is blocked again. [b]Photos[/b] to follow.")
    return msg.as_bytes()


# --- the day's work: import, one pass, look at the result ----------------------------


@dataclass
class Journey:
    home: Home
    upgrade: Result
    upgrade_again: Result
    members: Result
    run: Result
    cases: dict[str, list[str]]  # reference -> Member, Subject, Service area, ...


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Journey:
    """scripts/demo in miniature: db upgrade, import members, drop the sample mail, run once;
    all of it at FIXED_NOW, so the mail is received then, wherever the day the tests run."""
    home = new_home(tmp_path_factory.mktemp("journey"))
    with clock_at(FIXED_NOW):
        upgrade = home.cli("db", "upgrade")
        upgrade_again = home.cli("db", "upgrade")
        members = home.cli("members", "import", str(SAMPLES / "members.csv"))
        home.drop(*(p.read_bytes() for p in SAMPLE_MAIL), bracketed_enquiry())
        run = home.cli("run", "--once")
        listing = home.cli("cases", "list")
    assert listing.exit_code == 0, f"cases list failed: {listing.exception!r}"
    return Journey(home, upgrade, upgrade_again, members, run, rows(listing.stdout))


def ref_for(journey: Journey, subject: str) -> str:
    [ref] = [ref for ref, cells in journey.cases.items() if cells[1] == subject]
    return ref


def test_db_upgrade_creates_the_database_and_a_second_run_changes_nothing(
    journey: Journey,
) -> None:
    first = ok(journey.upgrade)
    match = re.fullmatch(r"database upgraded from empty to (\w+)\n", first)
    assert match, first
    assert (journey.home.root / "mailbridge.db").is_file()
    assert ok(journey.upgrade_again) == f"database already at revision {match[1]}\n"


def test_db_backup_copies_the_database_and_every_stored_email(journey: Journey) -> None:
    out = ok(journey.home.cli("db", "backup", str(journey.home.root / "backups")))
    lines = out.splitlines()
    assert re.fullmatch(r"copied mailbridge\.db \(\d+ bytes\)", lines[0]), out
    assert re.fullmatch(r"copied blobs/blobs\.sqlite \(\d+ bytes\)", lines[1]), out
    [folder] = (journey.home.root / "backups").iterdir()
    assert lines[2:] == [f"backup in {folder}"]
    with sqlite3.connect(folder / "blobs" / "blobs.sqlite") as db:
        assert db.execute("SELECT count(*) FROM blob").fetchone()[0] >= 6  # the six emails


def test_run_once_turns_member_mail_into_cases_and_reports_the_pass(journey: Journey) -> None:
    assert "4 members imported: 4 created" in ok(journey.members)
    out = ok(journey.run)
    assert out.startswith(
        "4 new cases, 0 updates, 2 quarantined, 0 already handled, 0 failed (will retry); "
        "0 reminders, escalations and digests queued; "
        # Four acknowledgements, and one polite reply to each of the two unknown senders.
        "6 emails sent, 0 to retry, 0 failed"
    ), out
    assert "Traceback" not in journey.run.output


def test_cases_list_shows_references_members_and_subjects(journey: Journey) -> None:
    cases = journey.cases
    years = {REFERENCE.fullmatch(ref)[1] for ref in cases}  # type: ignore[index]
    assert len(years) == 1
    [year] = years
    assert sorted(cases) == [f"MQ-{year}-0000{n}" for n in (1, 2, 3, 4)]
    by_subject = {cells[1]: cells for cells in cases.values()}
    assert set(by_subject) == {
        "Pothole on Mill Lane, Little Bowden",
        "Care package review – Mr Evans",  # RFC 2047 encoded-word, decoded
        "Street light out on Church Street, Lutterworth",
        BRACKETED_SUBJECT,
    }
    pothole = by_subject["Pothole on Mill Lane, Little Bowden"]
    assert pothole[0] == "Cllr Jane Smith"
    assert pothole[2] == "Highways"
    assert pothole[3] == "New"
    # Written from her other address, the enquiry is filed under the member herself.
    assert by_subject["Street light out on Church Street, Lutterworth"][0] == "Cllr Margaret Owen"


def test_a_subject_that_looks_like_markup_prints_as_written(journey: Journey) -> None:
    """A "[/photos]" in a subject once crashed `cases list` for every case; "[urgent]" vanished."""
    ref = ref_for(journey, BRACKETED_SUBJECT)
    out = ok(journey.home.cli("case", "show", ref))
    assert out.splitlines()[0] == f"{ref}  {BRACKETED_SUBJECT}"
    assert "[b]Photos[/b] to follow." in out
    assert f"[{ref}] " in out  # the acknowledgement's subject tag, in the timeline


def test_cases_list_keeps_references_whole_on_an_80_column_terminal(journey: Journey) -> None:
    out = ok(journey.home.cli("cases", "list", width=80))
    assert max(len(line) for line in out.splitlines()) <= 80
    assert sorted(REFERENCE.findall(out)) == sorted(
        tuple(ref[3:].split("-")) for ref in journey.cases
    )
    assert "…" not in "".join(line.split("│")[1] for line in out.splitlines() if "MQ-" in line)


def test_case_show_gives_member_deadline_enquiry_and_attachments(
    journey: Journey, fixed_clock: datetime
) -> None:
    ref = ref_for(journey, "Care package review – Mr Evans")
    out = ok(journey.home.cli("case", "show", ref))
    assert out.splitlines()[0] == f"{ref}  Care package review – Mr Evans"
    fields = dict(
        re.findall(r"^  (\w[\w ]*?)\s{2,}(\S.*)$", out.split("\nEnquiry\n")[0], re.MULTILINE)
    )
    assert fields["Member"] == "Cllr Raj Patel <raj.patel@example.gov.uk>"
    assert fields["Submitted by"] == "Cllr Raj Patel <raj.patel@example.gov.uk>"
    assert fields["Service area"] == "Adult Social Care"
    assert fields["District"] == "Oadby and Wigston"
    assert fields["Status"] == "New"
    # Received today (Tue 1 Dec 2026, 10:00, the journey's fixed moment): ten working days to
    # reply from the day it counts as received, the same date `cases list` shows.
    due = journey.cases[ref][5]
    cal = WorkingCalendar(office_hours_end="17:00")
    left = 10 + cal.working_days_between(cal.local_date(fixed_clock), cal.received_day(FIXED_NOW))
    assert (due, left) == ("Tue 15 Dec 2026", 10)
    assert fields["Reply due"] == f"{due} ({left} working days left)"
    assert re.fullmatch(r"\w{3} \d{2} \w{3} \d{4}", fields["Acknowledge by"])
    assert "Mr Evans’ carer visits were cut" in out  # windows-1252 body, decoded
    attachments = out.split("Attachments", 1)[1].split("Timeline", 1)[0]
    [row] = [r for r in attachments.splitlines() if "letter-from-daughter.pdf" in r]
    assert "application/pdf" in row
    assert re.search(r"│ \d[\d,]* B\s+│", row), row
    assert "case_opened" in out and "acknowledgement_queued" in out


def test_each_case_is_acknowledged_into_the_outbox_with_its_reference(journey: Journey) -> None:
    everything = journey.home.sent()
    sent = [m for m in everything if m["Subject"].startswith("[MQ-")]
    assert len(sent) == 4
    strangers = [m for m in everything if m not in sent]
    assert len(strangers) == 2
    assert all(m["Subject"].startswith("This address is for county councillors") for m in strangers)
    by_ref = {}
    for ack in sent:
        match = re.match(r"\[(MQ-\d{4}-\d{5})\] ", ack["Subject"])
        assert match, ack["Subject"]
        by_ref[match[1]] = ack
    assert set(by_ref) == set(journey.cases)
    for ref, cells in journey.cases.items():
        assert cells[1] in by_ref[ref]["Subject"]
    pothole = by_ref[ref_for(journey, "Pothole on Mill Lane, Little Bowden")]
    assert pothole["To"] == "cllr.jane.smith@example.gov.uk"
    assert pothole["In-Reply-To"] == "<demo-01@mail.example.gov.uk>"
    assert by_ref[ref_for(journey, BRACKETED_SUBJECT)]["To"] == "david.okafor@example.gov.uk"


def test_handled_mail_leaves_the_inbox_for_processed_and_quarantine(journey: Journey) -> None:
    home = journey.home
    assert home.folder(None) == 0
    assert home.folder("Processed") == 4
    assert home.folder("Quarantine") == 2
    # Relative paths in config.toml are relative to the file, not to where we ran.
    # The raw mail of all six messages is kept under [storage] data_dir, beside config.toml.
    with sqlite3.connect(home.root / "data" / "blobs" / "blobs.sqlite") as db:
        assert db.execute("SELECT count(*) FROM blob").fetchone()[0] >= 6


def test_case_show_for_an_unknown_reference_is_one_friendly_line(journey: Journey) -> None:
    result = journey.home.cli("case", "show", "MQ-2026-99999")
    line = one_line_error(result, 1, "MQ-2026-99999")
    assert line == "error: no case has reference MQ-2026-99999 (see `mailbridge cases list`)"
    assert result.stdout == ""


def test_quarantine_list_and_show_give_the_reason(journey: Journey) -> None:
    listed = rows(ok(journey.home.cli("quarantine", "list")))
    assert len(listed) == 2
    by_sender = {cells[1]: (item_id, cells) for item_id, cells in listed.items()}
    assert set(by_sender) == {"bob@example.org", "tom.baker@example.gov.uk"}
    bob_id, bob = by_sender["bob@example.org"]
    assert bob[2] == "Bins not collected"
    assert bob[3] == f"bob@example.org {NOT_REGISTERED}"
    assert bob[4] == "waiting"

    out = ok(journey.home.cli("quarantine", "show", bob_id))
    shown = dict(re.findall(r"^  (\w[\w ]*?)\s{2,}(\S.*)$", out, re.MULTILINE))
    assert shown["Id"] == bob_id
    assert shown["From"] == "bob@example.org"
    assert shown["Subject"] == "Bins not collected"
    assert shown["Reason"] == f"bob@example.org {NOT_REGISTERED}"
    assert shown["Status"] == "waiting"
    assert re.fullmatch(r"[0-9a-f]{64}", shown["Stored as"])


def test_quarantine_show_for_an_unknown_id_is_one_friendly_line(journey: Journey) -> None:
    result = journey.home.cli("quarantine", "show", "999")
    one_line_error(result, 1, "no quarantined message has id 999", "mailbridge quarantine list")


# --- a stranger's mail: quarantined, retried, then a case once they are a member ------


def test_quarantine_retry_after_importing_the_sender_opens_a_case(tmp_path: Path) -> None:
    home = new_home(tmp_path / "home")
    home.drop((SAMPLES / "mail" / "05-from-a-stranger.eml").read_bytes())
    # No `db upgrade` first: any command creates the database on first use.
    assert ok(home.cli("run", "--once")).startswith("0 new cases, 0 updates, 1 quarantined")
    assert list(rows(ok(home.cli("quarantine", "list")))) == ["1"]

    # Retried too early: quarantined again, and told under which id to find it now.
    out = ok(home.cli("quarantine", "retry", "1"))
    assert out == (
        f"message 1 is quarantined again as message 2: bob@example.org {NOT_REGISTERED}\n"
    )
    waiting = rows(ok(home.cli("quarantine", "list")))
    assert list(waiting) == ["2"] and waiting["2"][4] == "waiting"

    members = tmp_path / "members.csv"
    members.write_text(
        "name,email,extra_emails,division,district,party\n"
        "Cllr Bob Reid,bob@example.org,,Market Harborough,Harborough,Independent\n",
        encoding="utf-8",
    )
    assert "1 member imported: 1 created" in ok(home.cli("members", "import", str(members)))

    out = ok(home.cli("quarantine", "retry", "2"))
    match = re.fullmatch(r"message 2 opened case (MQ-\d{4}-00001); (.*)\n", out)
    assert match, out
    ref = match[1]
    assert "acknowledgement is queued" in match[2]
    assert "Quarantine is empty" in ok(home.cli("quarantine", "list"))
    everything = rows(ok(home.cli("quarantine", "list", "--all")))
    assert {k: v[4] for k, v in everything.items()} == {"1": "retried", "2": "retried"}

    cases = rows(ok(home.cli("cases", "list")))
    assert cases[ref][:2] == ["Cllr Bob Reid", "Bins not collected"]
    shown = ok(home.cli("case", "show", ref))
    assert "Member          Cllr Bob Reid <bob@example.org>" in shown

    again = home.cli("quarantine", "retry", "2")
    one_line_error(again, 1, "quarantined message 2 was already retried")

    # The acknowledgement waits in the queue until the service's next pass sends it.
    before = home.sent()  # the one polite reply bob got while still unknown
    assert [m["Subject"][:38] for m in before] == ["This address is for county councillors"]
    assert "0 new cases, 0 updates, 0 quarantined" in ok(home.cli("run", "--once"))
    [ack] = [m for m in home.sent() if m["Subject"].startswith("[")]
    assert ack["To"] == "bob@example.org"
    assert ack["Subject"].startswith(f"[{ref}] ")


# --- configuration errors: exit 2, one line naming the file and the key ---------------


@pytest.mark.parametrize(
    ("toml", "command", "fragments"),
    [
        pytest.param(
            '[mailbox]\nurll = "maildir:./mailbox"\n',
            ("cases", "list"),
            ("mailbox.urll", "unknown key"),
            id="unknown-key",
        ),
        pytest.param(
            '[mailboxes]\nurl = "maildir:./mailbox"\n',
            ("run", "--once"),
            ("mailboxes", "unknown key"),
            id="unknown-section",
        ),
        pytest.param(
            '[mailbox]\nbatch_size = "lots"\n',
            ("quarantine", "list"),
            ("mailbox.batch_size", "valid integer"),
            id="wrong-type",
        ),
        pytest.param(
            '[mailbox]\nurl = "pop3://mail.example.gov.uk/"\n',
            ("run", "--once"),
            ("mailbox.url", "'pop3://mail.example.gov.uk/' must start with one of maildir:"),
            id="mailbox-url-scheme",
        ),
        pytest.param(
            '[database]\nurl = "mysql://db.example.gov.uk/mailbridge"\n',
            ("db", "upgrade"),
            ("database.url", "must start with sqlite:/// or postgresql+psycopg://"),
            id="database-url-scheme",
        ),
        pytest.param(
            '[mailbox\nurl = "maildir:./mailbox"\n',
            ("cases", "list"),
            ("not valid TOML", "line 1"),
            id="toml-syntax",
        ),
        pytest.param(
            '[mailbox]\nurl = "imaps://enquiries@imap.example.gov.uk:993/"\n'
            'password_env = "MAILBRIDGE_TEST_UNSET_PASSWORD"\n'
            '[database]\nurl = "sqlite:///./mailbridge.db"\n',
            ("run", "--once"),
            ("[mailbox] password", "environment variable MAILBRIDGE_TEST_UNSET_PASSWORD"),
            id="missing-secret-env",
        ),
    ],
)
def test_config_error_is_one_line_naming_file_and_key(
    tmp_path: Path, toml: str, command: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml, encoding="utf-8")
    result = invoke(*command, "--config", str(config), env={"MAILBRIDGE_TEST_UNSET_PASSWORD": None})
    one_line_error(result, 2, f"{config}: ", *fragments)
    assert result.stdout == ""
    # Stopped before anything was made: no database, no data folder, no mailbox.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_missing_config_file_says_which_file_and_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "etc" / "config.toml"
    result = invoke("cases", "list", "--config", str(missing))
    one_line_error(result, 2, str(missing), "no such config file", "config.example.toml")
    assert not missing.parent.exists()  # nothing was created on the way out


def test_config_path_from_the_environment_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "from-env.toml"
    result = invoke("quarantine", "list", env={"MAILBRIDGE_CONFIG": str(missing)})
    one_line_error(result, 2, f"{missing}: no such config file")


def test_bad_status_filter_is_a_usage_error_naming_the_choices(journey: Journey) -> None:
    result = journey.home.cli("cases", "list", "--status", "open")
    assert result.exit_code == 2
    assert "new, in_progress, completed" in result.stderr
    assert "Traceback" not in result.output


# --- an unreachable PostgreSQL --------------------------------------------------------

UNREACHABLE_PG = "postgresql+psycopg://mailbridge:s3cret@127.0.0.1:1/mailbridge"


@pytest.fixture
def pg_down_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("sqlite:///./mailbridge.db", UNREACHABLE_PG), encoding="utf-8")
    return config


@pytest.mark.parametrize(
    "command",
    [("db", "upgrade"), ("cases", "list"), ("run", "--once"), ("quarantine", "list")],
    ids=" ".join,
)
def test_unreachable_postgres_is_one_friendly_line(
    pg_down_config: Path, command: tuple[str, ...]
) -> None:
    result = invoke(*command, "--config", str(pg_down_config))
    line = one_line_error(result, 1, "cannot open the database 127.0.0.1:1/mailbridge")
    assert "refused" in line.lower()
    assert "s3cret" not in result.output


def test_a_database_lost_mid_command_is_one_friendly_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After the database was opened (a restart while `run --once` works through a
    backlog): the one line, exit 1, and no password or traceback."""

    @context.friendly
    def command() -> None:
        raise OperationalError(
            "SELECT 1",
            {},
            Exception("server closed the connection unexpectedly\n\tThis probably means"),
        )

    with pytest.raises(typer.Exit) as stopped:
        command()
    assert stopped.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: the database stopped answering: OperationalError: (builtins.Exception) server "
        "closed the connection unexpectedly. Nothing half-done was kept; check that it is "
        "running and try again"
    ]


def test_unreachable_postgres_in_a_real_process(pg_down_config: Path) -> None:
    """`python -m mailbridge`, as an operator runs it: nothing but the one line on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "mailbridge", "db", "upgrade", "--config", str(pg_down_config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=pg_down_config.parent,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: cannot open the database 127.0.0.1:1/mailbridge: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr


@pytest.mark.parametrize(
    ("code", "returncode", "stderr"),
    [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("error: no such case", 1, "error: no such case\n")],
)
def test_the_process_ends_with_the_commands_code_and_all_its_output(
    code: int | str | None, returncode: int, stderr: str
) -> None:
    """`leave` skips the interpreter's teardown: the exit code and the output must not
    suffer for it, even output still sitting in a buffer."""
    program = (
        "import sys\n"
        "from mailbridge.cli.app import leave\n"
        "sys.stdout.write('x' * 100_000)\n"  # more than a pipe's buffer: flushed at the end
        f"leave({code!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == returncode
    assert proc.stdout == "x" * 100_000
    assert proc.stderr == stderr


def test_the_command_starts_without_what_only_workers_or_postgresql_need() -> None:
    """Every command pays for its imports: the parse workers import mail-parser after the
    fork, the courier aiosmtplib, only a PostgreSQL deployment SQLAlchemy's dialect, and
    only a config with webhooks httpx."""
    program = (
        "import sys\n"
        "import mailbridge.cli.app, mailbridge.service.daemon, mailbridge.pipeline.steps\n"
        "import mailbridge.delivery.courier\n"
        "late = ('mailparser', 'aiosmtplib', 'sqlalchemy.dialects.postgresql', 'httpx')\n"
        "print(sorted(m for m in late if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_profiled_command_still_writes_its_profile(tmp_path: Path) -> None:
    """Under cProfile (`bench/ingest.py --profile`) the interpreter exits normally: the
    profile is written when it does, which skipping the teardown would lose."""
    script = tmp_path / "command.py"
    script.write_text("from mailbridge.cli.app import leave\nleave(3)\n")
    out = tmp_path / "run.prof"
    proc = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr  # cProfile itself swallows the SystemExit
    assert out.stat().st_size > 0


# --- help -----------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    out = ok(invoke("--help"))
    assert "Email-first case management for council member enquiries." in out
    commands = re.findall(r"^│ (\w[\w-]*)\s{2,}", out, re.MULTILINE)
    assert commands == [
        "run",
        "check",
        "dashboard",
        "export",
        "report",
        "audit",
        "web",
        "db",
        "members",
        "officers",
        "delegates",
        "cases",
        "case",
        "quarantine",
        "addresses",
        "calendar",
        "schedule",
        "webhooks",
        "keys",
        "retention",
        "erase",
        "sar",
        "api-tokens",
    ]


def test_command_help_carries_an_example() -> None:
    out = ok(invoke("case", "show", "--help"))
    assert "Example: mailbridge case show MQ-2026-00042" in out


def test_a_too_large_email_is_listed_and_cannot_be_retried(tmp_path: Path) -> None:
    home = new_home(tmp_path / "home")
    box = 'url = "maildir:./mailbox"\n'
    limited = CONFIG.replace(box, box + "max_message_bytes = 100000\n")
    home.config.write_text(limited, encoding="utf-8")
    home.drop(large_attachment(200_000, sender="bob@example.org"))
    assert ok(home.cli("run", "--once")).startswith("0 new cases, 0 updates, 1 quarantined")
    [(item_id, cells)] = rows(ok(home.cli("quarantine", "list"))).items()
    assert cells[1] == "bob@example.org" and cells[4] == "waiting"
    assert cells[3].startswith("the message is larger than mailbridge takes: 0.2 MB")
    assert home.folder("Quarantine") == 1
    result = home.cli("quarantine", "retry", item_id)
    one_line_error(result, 1, "was too large to keep", "quarantine folder")
