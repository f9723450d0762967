"""Subject access exports (`mailbridge sar export`), on SQLite and PostgreSQL.

A council's cases are made from real emails through the real pipeline (Maildir in, one pass
of the daemon): Jane's pothole enquiry (REF), assigned to Priya; Jane's second enquiry, about
a resident named only in its text; Raj's unrelated case; a resident's email that opened no
case. Each test runs the command as a coordinator does and reads the zip it left.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col, select
from typer.testing import Result

from mailbridge.cases.records import add_event
from mailbridge.errors import UserError
from mailbridge.privacy.subject_access import Search
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Attachment, AuditRecord, Case, Message, utcnow
from tests.factories import add_person, fixture_bytes, ok_lines, one_error
from tests.helpers.council import (
    GARETH,
    JANE,
    JANE_HOME,
    PRIYA,
    RAJ,
    REF,
    SUPPORT,
    TOM,
    Council,
    build_council,
    council_cli,
    new_email,
    write_council_config,
)

pytestmark = pytest.mark.usefixtures("fixed_clock")

RESIDENT = "Mrs Edith Crawley"
RESIDENT_MAIL = "resident@example.org"  # A Resident, unknown_sender_enquiry.eml


@dataclass
class Desk:
    config: Path
    council: Council
    tmp: Path
    care: str  # Jane's enquiry naming the resident
    raj: str  # Raj's case: concerns none of the people searched for

    def sar(self, *args: str, acting_as: str | None = None) -> Result:
        head = ["--as", acting_as] if acting_as else []
        return council_cli(self.config, *head, "sar", "export", *args)

    def export(self, *args: str, name: str = "sar.zip") -> tuple[zipfile.ZipFile, list[str]]:
        out = self.tmp / name
        lines = ok_lines(self.sar(*args, "--out", str(out), acting_as=SUPPORT))
        return zipfile.ZipFile(out), lines

    def audit(self, action: str | None = None) -> list[AuditRecord]:
        with self.council.db() as session:
            query = select(AuditRecord).order_by(AuditRecord.id)  # type: ignore[arg-type]
            if action:
                query = query.where(AuditRecord.action == action)
            return list(session.exec(query))


@pytest.fixture
def desk(tmp_path: Path, migrated_db_url: str) -> Iterator[Desk]:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    config = write_council_config(tmp_path, migrated_db_url)
    council.open_pothole_case()
    council.assign(PRIYA)
    [care] = council.deliver(
        new_email(
            JANE_HOME,
            "Care assessment for a resident in Bowden",
            f"{RESIDENT} of 3 Mill Lane has waited four months for a care assessment.\n"
            "Her daughter says the carer visits have stopped. Could someone call her?",
            name="Jane Smith",
        )
    ).references
    [raj] = council.deliver(
        new_email(RAJ, "Pothole outside 14 Main Street", "Residents report a deep pothole.")
    ).references
    council.deliver(fixture_bytes("unknown_sender_enquiry.eml"))
    council.new_mail()
    yield Desk(config, council, tmp_path, care, raj)
    engine.dispose()


def read(zf: zipfile.ZipFile, name: str) -> str:
    return zf.read(name).decode("utf-8-sig")


def index_rows(zf: zipfile.ZipFile) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read(zf, "index.csv"))))


def case_folders(zf: zipfile.ZipFile) -> set[str]:
    return {n.split("/")[1] for n in zf.namelist() if n.startswith("cases/")}


# --- what to look for ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "name", "expected"),
    [
        (" Resident@Example.ORG ", None, Search(email="resident@example.org")),
        (None, "  edith   Crawley ", Search(name="edith Crawley")),
        ("", "Edith", Search(name="Edith")),
    ],
)
def test_search_takes_one_address_or_one_name(
    email: str | None, name: str | None, expected: Search
) -> None:
    assert Search.of(email, name) == expected


@pytest.mark.parametrize(
    ("email", "name", "error"),
    [
        ("a@example.org", "Edith", 'give either --email ADDRESS or --name "NAME" (one of the two)'),
        (None, None, 'give either --email ADDRESS or --name "NAME" (one of the two)'),
        ("  ", " ", 'give either --email ADDRESS or --name "NAME" (one of the two)'),
        ("edith", None, "--email 'edith' is not an email address"),
        (
            None,
            "Ed",
            "--name 'Ed': give at least 3 letters (a shorter text matches nearly everything)",
        ),
    ],
)
def test_search_refuses_both_neither_or_too_little(
    email: str | None, name: str | None, error: str
) -> None:
    with pytest.raises(UserError) as raised:
        Search.of(email, name)
    assert str(raised.value) == error


# --- the exports ---------------------------------------------------------------------------


def test_member_export_holds_every_case_of_hers_whole_and_nothing_else(desk: Desk) -> None:
    before = os.umask(0o022)
    try:
        zf, lines = desk.export("--email", JANE_HOME)  # her other address finds her too
    finally:
        os.umask(before)
    out = desk.tmp / "sar.zip"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in desk.tmp.iterdir() if p.name.startswith(".sar.zip")] == []
    assert lines[0] == f"Subject access export for the address {JANE_HOME} written to {out}"
    assert lines[1] == f"  in the directory: Cllr Jane Smith <{JANE}> (member)"
    assert lines[-1] == "Review it, and take out other people's personal data, before you send it."
    assert case_folders(zf) == {REF, desk.care}
    names = zf.namelist()
    # The enquiry as received, byte for byte, and its text; the acknowledgement as sent.
    eml = f"cases/{REF}/emails/001-received-2026-11-24.eml"
    assert zf.read(eml) == fixture_bytes("member_new_enquiry_pothole.eml")
    assert "Subject: Pothole on Mill Lane" in read(zf, eml.replace(".eml", ".txt"))
    assert any(
        n.startswith(f"cases/{REF}/emails/") and "-sent-" in n and n.endswith(".eml") for n in names
    )
    events = list(csv.DictReader(io.StringIO(read(zf, f"cases/{REF}/events.csv"))))
    assert [e["What"] for e in events] == ["case_opened", "acknowledgement_queued", "assigned"]
    html = read(zf, "index.html")
    assert REF in html and desk.care in html and desk.raj not in html
    assert "they raised it (the member)" in html
    assert RESIDENT in html  # the care enquiry's text, whole
    rows = index_rows(zf)
    kinds = {r["Item"] for r in rows}
    assert {"case", "email received", "email sent", "event"} <= kinds
    assert {r["Case"] for r in rows if r["Item"] == "case"} == {REF, desk.care}
    # Audited once for the export, once per case, as the coordinator given with --as.
    [done] = desk.audit("sar.export")
    assert done.actor == SUPPORT and done.channel == "cli"
    assert f"the address {JANE_HOME}: 2 cases" in done.detail and str(out) in done.detail
    per_case = sorted(r.case_reference or "" for r in desk.audit("sar.case"))
    assert per_case == sorted([REF, desk.care])


def test_officer_export_holds_the_cases_she_works_on(desk: Desk) -> None:
    zf, _ = desk.export("--email", PRIYA)
    assert case_folders(zf) == {REF}
    html = read(zf, "index.html")
    assert "they are its lead officer" in html
    [case] = [r for r in index_rows(zf) if r["Item"] == "case"]
    assert case["Case"] == REF and "they are its lead officer" in case["Note"]
    # The assignment mailed to her is there, as sent.
    sent = [r for r in index_rows(zf) if r["Item"] == "email sent" and PRIYA in r["To"]]
    assert sent and all(r["Files"].endswith(".eml") for r in sent)


def test_resident_named_only_in_a_text_is_found_by_name_and_the_index_says_it_is_a_text_search(
    desk: Desk,
) -> None:
    zf, lines = desk.export("--name", "edith CRAWLEY")
    assert case_folders(zf) == {desk.care}
    html = read(zf, "index.html")
    assert "This is a text search" in html and "same name" in html
    assert "the name is in its subject or enquiry" in html
    assert "  a name search is a text search: it can miss spellings and include namesakes" in lines
    # The member's own export has the case too; the unrelated case is in neither.
    jane, _ = desk.export("--email", JANE, name="jane.zip")
    assert desk.care in case_folders(jane) and desk.raj not in case_folders(jane)


def test_a_resident_with_no_case_gets_the_mail_that_opened_none(desk: Desk) -> None:
    zf, lines = desk.export("--email", RESIDENT_MAIL.upper())
    nobody = "nobody in the directory has this address: emails from and to it were looked for"
    assert f"  {nobody}" in lines
    assert case_folders(zf) == set()
    loose = [n for n in zf.namelist() if n.startswith("emails-not-on-a-case/")]
    assert any(n.endswith(".eml") for n in loose) and any(n.endswith(".txt") for n in loose)
    [eml] = [n for n in loose if "-received-" in n and n.endswith(".eml")]
    [answer] = [n for n in loose if "-sent-" in n and n.endswith(".txt")]  # the stranger reply
    assert f"To: {RESIDENT_MAIL}" in read(zf, answer)
    assert zf.read(eml) == fixture_bytes("unknown_sender_enquiry.eml")
    assert "Bins not collected" in read(zf, "index.html")


def test_an_address_nobody_has_gives_an_empty_valid_export_that_says_so(desk: Desk) -> None:
    zf, lines = desk.export("--email", "nobody@example.net")
    assert zf.testzip() is None
    assert sorted(zf.namelist()) == ["index.csv", "index.html"]
    assert "Nothing was found." in read(zf, "index.html")
    assert index_rows(zf) == []
    assert "  nothing found: the zip says so" in lines
    [done] = desk.audit("sar.export")
    assert "0 cases, 0 emails" in done.detail
    assert desk.audit("sar.case") == []


def test_hostile_names_and_subjects_stay_inside_the_zip_and_escaped(desk: Desk) -> None:
    add_person(desk.council.engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    desk.council.deliver(fixture_bytes("attachment_filenames_path_traversal_and_control_chars.eml"))
    desk.council.deliver(
        new_email(
            GARETH,
            '<script>alert("subject")</script> & more',
            '<img src=x onerror=alert("body")> =HYPERLINK("http://evil.example","x")',
            name='<b onmouseover="x">Gareth</b>',
        )
    )
    desk.council.deliver(
        new_email(GARETH, '=HYPERLINK("http://evil.example","x")', "A formula for a subject.")
    )
    # The parser makes names safe as it stores them; rows written before it did were not.
    with transaction(desk.council.engine) as session:
        rows = session.exec(select(Attachment).order_by(col(Attachment.id))).all()
        old = ("../../../etc/passwd", "..\\..\\boot.ini", "/etc/cron.d/x", "..")
        for row, name in zip(rows, old, strict=False):
            row.filename = name
    zf, _ = desk.export("--email", GARETH)
    for name in zf.namelist():
        assert not name.startswith("/") and "\\" not in name, name
        assert ".." not in name.split("/"), name
        assert all(part and not part.startswith(".") for part in name.split("/")), name
        assert all(ord(c) >= 32 and c != "\x7f" for c in name), repr(name)
        assert zf.getinfo(name).external_attr >> 16 == 0o600
        assert name.split("/")[0] in (
            "index.html",
            "index.csv",
            "cases",
            "audit.csv",
            "emails-not-on-a-case",
        ), name
    attachments = [n for n in zf.namelist() if "/attachments/" in n]
    assert len(attachments) >= 5
    html = read(zf, "index.html")
    assert "<script>" not in html and "<img" not in html and "<b onmouseover" not in html
    assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt; &amp; more" in html
    rows = index_rows(zf)
    assert not any(cell.startswith("=") for r in rows for cell in r.values())
    assert '\'=HYPERLINK("http://evil.example","x")' in [r["Subject or detail"] for r in rows]


def test_an_existing_file_is_kept_unless_force_and_errors_are_one_line(desk: Desk) -> None:
    out = desk.tmp / "sar.zip"
    one_error(
        desk.sar("--email", JANE, "--name", "Jane", "--out", str(out)),
        'give either --email ADDRESS or --name "NAME" (one of the two)',
    )
    one_error(
        desk.sar("--out", str(out)),
        'give either --email ADDRESS or --name "NAME" (one of the two)',
    )
    assert not out.exists()
    out.write_bytes(b"last month's export")
    one_error(
        desk.sar("--email", JANE, "--out", str(out)),
        f"{out} is there already; nothing written (use --force to replace it)",
    )
    assert out.read_bytes() == b"last month's export"
    assert desk.audit("sar.export") == []
    (desk.tmp / "a-file").write_text("")
    one_error(
        desk.sar("--email", JANE, "--out", str(desk.tmp / "a-file" / "sar.zip")),
        f"cannot write {desk.tmp / 'a-file' / 'sar.zip'}: Not a directory; nothing written",
    )
    ok_lines(desk.sar("--email", JANE, "--out", str(out), "--force"))
    assert zipfile.is_zipfile(out) and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(desk.audit("sar.export")) == 1


def test_erased_content_is_listed_as_erased_not_missing(desk: Desk) -> None:
    with transaction(desk.council.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        case.content_erased_at = utcnow() - timedelta(days=1)
        for m in session.exec(select(Message).where(Message.case_id == case.id)):
            m.erased_at = case.content_erased_at
    zf, _ = desk.export("--email", JANE)
    assert not [n for n in zf.namelist() if n.startswith(f"cases/{REF}/emails/")]
    assert f"cases/{REF}/events.csv" in zf.namelist()
    html = read(zf, "index.html")
    assert "was erased on" in html and f"{REF}</a> (content erased)" in html
    emails = [r for r in index_rows(zf) if r["Case"] == REF and r["Item"].startswith("email")]
    assert emails and all(r["Note"].startswith("erased on") and not r["Files"] for r in emails)


def test_the_audit_names_the_operating_system_account_without_as(desk: Desk) -> None:
    out = desk.tmp / "sar.zip"
    ok_lines(desk.sar("--email", JANE, "--out", str(out)))
    [done] = desk.audit("sar.export")
    assert done.actor.startswith("os:")


def test_a_run_that_fails_at_the_end_leaves_no_zip_and_no_part_file(desk: Desk) -> None:
    """The audit cannot be written (its table gone): the finished zip is thrown away."""
    with transaction(desk.council.engine) as session:
        session.exec(text("DROP TABLE audit"))  # type: ignore[call-overload]
    out = desk.tmp / "sar.zip"
    result = desk.sar("--name", RESIDENT, "--out", str(out))
    assert result.exit_code != 0
    assert [p.name for p in desk.tmp.iterdir() if "sar.zip" in p.name] == []


def test_her_primary_address_finds_mail_from_her_other_one_on_no_case(desk: Desk) -> None:
    desk.council.deliver(new_email(JANE_HOME, "status", ""))  # a status request: no case
    zf, _ = desk.export("--email", JANE)
    loose = [r for r in index_rows(zf) if not r["Case"] and r["Item"].startswith("email")]
    assert {(r["Item"], r["Subject or detail"]) for r in loose} >= {("email received", "status")}


def test_a_delegate_and_a_coordinator_find_the_cases_they_sent_in_or_acted_on(desk: Desk) -> None:
    [school] = desk.council.deliver(fixture_bytes("delegate_writes_for_member.eml")).references
    zf, _ = desk.export("--email", TOM)
    assert case_folders(zf) == {school}
    [case] = [r for r in index_rows(zf) if r["Item"] == "case"]
    assert "they sent it in for the member (a delegate)" in case["Note"]
    # An event as the audit's actors sign them: the coordinator's address, then the door.
    with transaction(desk.council.engine) as session:
        add_event(
            session,
            desk.council.case(desk.raj).id,
            "note",
            "Called the resident.",
            actor=f"{SUPPORT} (cli, member.support@server)",
        )
    zf, _ = desk.export("--email", SUPPORT, name="support.zip")
    assert case_folders(zf) == {desk.raj}
    [case] = [r for r in index_rows(zf) if r["Item"] == "case"]
    assert "they appear in its timeline" in case["Note"]


def test_an_unknown_as_is_refused_before_anything_is_written(desk: Desk) -> None:
    out = desk.tmp / "sar.zip"
    result = desk.sar("--email", JANE, "--out", str(out), acting_as="someone@example.org")
    assert result.exit_code == 1 and "not a coordinator" in result.stderr, result.output
    assert not out.exists() and desk.audit("sar.export") == []
