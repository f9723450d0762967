"""The people directory: CSV imports, identify(), coordinators from config, and the commands."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from mailbridge.cases.directory import (
    Identity,
    ImportReport,
    identify,
    import_delegates,
    import_members,
    import_officers,
    read_csv,
    sync_coordinators,
)
from mailbridge.cli.context import console
from mailbridge.cli.directory import delegates_app, members_app, officers_app
from mailbridge.config import Coordinator
from mailbridge.errors import ConfigError, UserError
from mailbridge.signin.roles import Role, roles_of
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Person, PersonAddress

FIXTURES = Path(__file__).parents[1] / "fixtures" / "directory"

JANE = "cllr.jane.smith@example.gov.uk"
RAJ = "raj.patel@example.gov.uk"


def run_import(engine: Engine, importer, name: str) -> ImportReport:  # type: ignore[no-untyped-def]
    rows = read_csv(FIXTURES / f"{name}.csv", name)
    with transaction(engine) as session:
        return importer(session, rows)


def load_all(engine: Engine) -> None:
    run_import(engine, import_members, "members")
    run_import(engine, import_officers, "officers")
    run_import(engine, import_delegates, "delegates")


def who(engine: Engine, address: str | None) -> Identity:
    with Session(engine) as session:
        return identify(session, address)


def addresses_of(engine: Engine, email: str) -> set[str]:
    with Session(engine) as session:
        person = session.exec(select(Person).where(Person.email == email)).one()
        return set(
            session.exec(
                select(PersonAddress.email).where(PersonAddress.person_id == person.id)
            ).all()
        )


# --- imports -----------------------------------------------------------------------------


def test_members_csv_from_excel_imports_six_and_rejects_bad_email_and_duplicate(
    engine: Engine,
) -> None:
    report = run_import(engine, import_members, "members")

    assert (report.created, report.updated, report.unchanged) == (6, 0, 0)
    assert [n for n, _ in report.rejected] == [7, 9]  # spreadsheet rows; the blank row 10 skipped
    assert "tom.hughes@example-gov-uk" in report.rejected[0][1]
    assert "not a valid address" in report.rejected[0][1]
    assert "raj.patel@example.gov.uk appears more than once" in report.rejected[1][1]
    with Session(engine) as session:
        jane = session.exec(select(Person).where(Person.email == JANE)).one()
        assert (jane.kind, jane.name, jane.division, jane.district, jane.party) == (
            "member",
            "Cllr Jane Smith",
            "Bowden",
            "Harborough",
            "Independent",
        )
        names = session.exec(select(Person.name).where(Person.kind == "member")).all()
        assert "Cllr Siobhán Ní Bhriain" in names  # UTF-8 survives
    assert addresses_of(engine, JANE) == {
        JANE,
        "jane.smith@home.example.org",
        "j.smith@bowden-pc.example.org",
    }


def test_reimporting_the_same_files_changes_nothing(engine: Engine) -> None:
    load_all(engine)

    again = [
        run_import(engine, import_members, "members"),
        run_import(engine, import_officers, "officers"),
        run_import(engine, import_delegates, "delegates"),
    ]

    assert [(r.created, r.updated, r.unchanged) for r in again] == [(0, 0, 6), (0, 0, 3), (0, 0, 2)]
    assert [len(r.rejected) for r in again] == [2, 3, 1]
    with Session(engine) as session:
        assert len(session.exec(select(Person)).all()) == 11
        assert len(session.exec(select(PersonAddress)).all()) == 11 + 4


def test_update_changes_district_and_replaces_extra_addresses(engine: Engine) -> None:
    run_import(engine, import_members, "members")
    row = {
        "name": "Cllr Jane Smith",
        "email": JANE,
        "extra_emails": "Jane.Smith@NewHome.example.org",
        "division": "Bowden",
        "district": "Melton",
        "party": "Independent",
    }

    with transaction(engine) as session:
        report = import_members(session, [row])

    assert (report.created, report.updated, report.unchanged, report.rejected) == (0, 1, 0, [])
    assert addresses_of(engine, JANE) == {JANE, "jane.smith@newhome.example.org"}
    assert who(engine, "jane.smith@home.example.org").kind is None  # the old one is gone
    with Session(engine) as session:
        jane = session.exec(select(Person).where(Person.email == JANE)).one()
        assert jane.district == "Melton"
    # The released address may now be someone else's.
    with transaction(engine) as session:
        taken = import_officers(
            session,
            [{"name": "Sam Green", "email": "jane.smith@home.example.org"}],
        )
    assert taken.created == 1


def test_officers_reject_missing_name_a_members_email_and_a_members_extra_address(
    engine: Engine,
) -> None:
    run_import(engine, import_members, "members")

    report = run_import(engine, import_officers, "officers")

    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    reasons = dict(report.rejected)
    assert set(reasons) == {5, 6, 7}
    assert reasons[5] == "name is empty"
    assert "already registered as a member (Cllr Raj Patel)" in reasons[6]
    assert "cannot also be an officer" in reasons[6]
    assert "jane.smith@home.example.org already belongs to another person" in reasons[7]
    assert "Cllr Jane Smith" in reasons[7]
    assert who(engine, RAJ).kind == "member"  # untouched
    helen = who(engine, "Helen.Carter@adults.example.gov.uk")
    assert (helen.kind, helen.name, helen.member_id) == ("officer", "Helen Carter", None)


def test_delegate_resolves_to_the_member_they_write_for(engine: Engine) -> None:
    run_import(engine, import_members, "members")

    report = run_import(engine, import_delegates, "delegates")

    assert report.created == 2
    assert report.rejected == [
        (
            4,
            "member_email 'nobody.here@example.gov.uk' is not a known member "
            "(import members first)",
        )
    ]
    jane, tom = who(engine, JANE), who(engine, "tom.baker@example.gov.uk")
    assert tom.kind == "delegate"
    assert tom.person_id != jane.person_id
    assert tom.member_id == jane.person_id == jane.member_id
    assert who(engine, "linda.moss@example.gov.uk").member_id == who(engine, RAJ).person_id


def test_a_delegate_moved_to_another_member_is_updated(engine: Engine) -> None:
    run_import(engine, import_members, "members")
    run_import(engine, import_delegates, "delegates")

    with transaction(engine) as session:
        report = import_delegates(
            session,
            [{"name": "Tom Baker", "email": "tom.baker@example.gov.uk", "member_email": RAJ}],
        )

    assert report.updated == 1
    assert who(engine, "tom.baker@example.gov.uk").member_id == who(engine, RAJ).person_id


def test_too_long_values_are_rejected_not_a_database_error(engine: Engine) -> None:
    """PostgreSQL enforces the column sizes: one long cell must not abort the whole import."""
    rows = [
        {"name": "x" * 201, "email": "long.name@example.gov.uk"},
        {"name": "Cllr Long Division", "email": "long.div@example.gov.uk", "division": "y" * 201},
        {"name": "Cllr Fine", "email": "fine@example.gov.uk"},
    ]

    with transaction(engine) as session:
        report = import_members(session, rows)

    assert report.created == 1
    assert [r for _, r in report.rejected] == [
        "name is longer than 200 characters",
        "division is longer than 200 characters",
    ]


# --- identify ----------------------------------------------------------------------------


def test_identify_finds_a_member_by_an_extra_address_in_any_case(engine: Engine) -> None:
    run_import(engine, import_members, "members")

    found = who(engine, "  J.SMITH@bowden-pc.EXAMPLE.org ")
    primary = who(engine, "Cllr.Jane.Smith@Example.Gov.UK")

    assert found.kind == "member"
    assert found.name == "Cllr Jane Smith"
    assert found.address == "j.smith@bowden-pc.example.org"
    assert found.person_id == found.member_id == primary.person_id


def test_identify_unknown_empty_and_inactive_addresses_are_nobody(engine: Engine) -> None:
    run_import(engine, import_members, "members")
    with transaction(engine) as session:
        raj = session.exec(select(Person).where(Person.email == RAJ)).one()
        raj.active = False
        session.add(raj)

    assert who(engine, "stranger@example.com") == Identity(
        None, None, None, "stranger@example.com", None
    )
    assert who(engine, None).kind is None
    assert who(engine, "").kind is None
    assert who(engine, RAJ).kind is None


# --- coordinators ------------------------------------------------------------------------


def test_sync_coordinators_is_idempotent_and_follows_config(engine: Engine) -> None:
    support = Coordinator(name="Member Support", email="Member.Support@example.gov.uk")
    lead = Coordinator(name="Anna Lead", email="anna.lead@example.gov.uk")

    for _ in range(2):
        with transaction(engine) as session:
            sync_coordinators(session, [support, lead])

    with Session(engine) as session:
        assert len(session.exec(select(Person).where(Person.kind == "coordinator")).all()) == 2
    found = who(engine, "member.support@example.gov.uk")
    assert (found.kind, found.name, found.member_id) == ("coordinator", "Member Support", None)

    renamed = Coordinator(name="Member Support Team", email="member.support@example.gov.uk")
    with transaction(engine) as session:
        sync_coordinators(session, [renamed])

    assert who(engine, "member.support@example.gov.uk").name == "Member Support Team"
    assert who(engine, "anna.lead@example.gov.uk").kind is None  # removed from config

    with transaction(engine) as session:
        sync_coordinators(session, [renamed, lead])
    assert who(engine, "anna.lead@example.gov.uk").kind == "coordinator"  # back again


def test_a_coordinator_whose_address_is_a_members_is_a_config_error(engine: Engine) -> None:
    run_import(engine, import_members, "members")

    extra = Coordinator(name="Jane", email="jane.smith@home.example.org")
    with (
        pytest.raises(ConfigError, match=r"jane.smith@home.example.org already belongs"),
        transaction(engine) as session,
    ):
        sync_coordinators(session, [extra])
    with (
        pytest.raises(ConfigError, match=r"already registered as a member"),
        transaction(engine) as session,
    ):
        sync_coordinators(session, [Coordinator(name="Raj", email=RAJ)])
    assert who(engine, RAJ).kind == "member"


# --- reading files -----------------------------------------------------------------------


def test_read_csv_explains_a_missing_file_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        read_csv(tmp_path / "absent.csv", "members")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Name,E-mail address\nJane,jane@example.org\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        read_csv(wrong, "members")
    assert "missing column(s) email" in str(caught.value)
    assert "name,email,extra_emails,division,district,party" in str(caught.value)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("name,email\nSiobhán,s@example.org\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_csv(latin1, "members")
    with pytest.raises(UserError, match="missing column"):
        read_csv(FIXTURES / "members.csv", "delegates")


def test_read_csv_tolerates_the_bom_and_header_case(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(
        b"\xef\xbb\xbf Name ,EMAIL,Member_Email\r\nTom,t@example.org,j@example.org\r\n"
    )

    assert read_csv(path, "delegates") == [
        {"name": "Tom", "email": "t@example.org", "member_email": "j@example.org", "_row": "2"}
    ]


# --- commands ----------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal config on a SQLite database that the command creates and migrates itself."""
    # Rich would fold long reasons at 80 columns. Pin the stored width, not the `width`
    # property: restoring that would pin whatever width rich guessed for every later test.
    monkeypatch.setattr(console, "_width", 200)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "mb.db"}"\n\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n',
        encoding="utf-8",
    )
    return path


def invoke(app, *args: str | Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args])


def test_import_command_prints_a_summary_and_the_rejected_rows(config_file: Path) -> None:
    first = invoke(members_app, "import", FIXTURES / "members.csv", "--config", config_file)

    assert first.exit_code == 0, first.output
    assert "6 members imported: 6 created, 0 updated, 0 unchanged; 2 rows rejected" in first.stdout
    assert "Rejected rows" in first.stdout
    assert "tom.hughes@example-gov-uk" in first.stdout
    assert "raj.patel@example.gov.uk appears more than once" in first.stdout

    again = invoke(members_app, "import", FIXTURES / "members.csv", "--config", config_file)
    assert "6 members imported: 0 created, 0 updated, 6 unchanged" in again.stdout

    delegates = invoke(delegates_app, "import", FIXTURES / "delegates.csv", "-c", config_file)
    assert delegates.exit_code == 0
    assert "2 delegates imported: 2 created, 0 updated, 0 unchanged; 1 row rejected" in (
        delegates.stdout
    )
    listed = invoke(delegates_app, "list", "--format", "csv", "--config", config_file)
    assert listed.stdout.splitlines() == [
        "name,email,member_email",
        "Linda Moss,linda.moss@example.gov.uk,raj.patel@example.gov.uk",
        f"Tom Baker,tom.baker@example.gov.uk,{JANE}",
    ]


def test_list_as_csv_can_be_imported_again_unchanged(config_file: Path, tmp_path: Path) -> None:
    invoke(members_app, "import", FIXTURES / "members.csv", "--config", config_file)
    invoke(officers_app, "import", FIXTURES / "officers.csv", "--config", config_file)

    listed = invoke(members_app, "list", "--format", "csv", "--config", config_file)
    table = invoke(officers_app, "list", "--config", config_file)

    assert listed.exit_code == 0, listed.output
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert len(rows) == 6
    jane = next(r for r in rows if r["email"] == JANE)
    assert jane["extra_emails"] == "j.smith@bowden-pc.example.org; jane.smith@home.example.org"
    assert (jane["division"], jane["district"], jane["party"]) == (
        "Bowden",
        "Harborough",
        "Independent",
    )
    exported = tmp_path / "exported.csv"
    exported.write_text(listed.stdout, encoding="utf-8")
    back = invoke(members_app, "import", exported, "--config", config_file)
    assert "6 members imported: 0 created, 0 updated, 6 unchanged; 0 rows rejected" in back.stdout

    assert table.exit_code == 0, table.output
    assert "3 officers" in table.stdout
    assert "helen.carter@adults.example.gov.uk" in table.stdout
    assert "Adult Social Care" in table.stdout


def test_an_unreadable_file_is_one_line_and_exit_code_1(config_file: Path, tmp_path: Path) -> None:
    missing = invoke(officers_app, "import", tmp_path / "nope.csv", "--config", config_file)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("full name,address\n", encoding="utf-8")
    columns = invoke(officers_app, "import", wrong, "--config", config_file)

    assert missing.exit_code == 1
    assert "nope.csv: no such file" in missing.stderr
    assert "Traceback" not in missing.output
    assert columns.exit_code == 1
    assert "missing column(s) name, email" in columns.stderr
    assert "name,email,extra_emails,service_area,directorate" in columns.stderr


def test_the_officers_coordinator_column_makes_an_officer_a_coordinator_too(
    config_file: Path, tmp_path: Path
) -> None:
    officers = tmp_path / "officers.csv"
    officers.write_text(
        "name,email,service_area,coordinator\n"
        "Priya Shah,priya.shah@example.gov.uk,Highways,Yes\n"
        "Mark Jones,mark.jones@example.gov.uk,School Transport,TRUE\n"
        "Helen Carter,helen.carter@example.gov.uk,Adult Social Care,1\n"
        "Sam Green,sam.green@example.gov.uk,Waste,\n"
        "Ann Other,ann.other@example.gov.uk,Waste,no\n"
        "Bob Vague,bob.vague@example.gov.uk,Waste,maybe\n",
        encoding="utf-8",
    )
    imported = invoke(officers_app, "import", officers, "--config", config_file)
    listed = invoke(officers_app, "list", "--format", "csv", "--config", config_file)

    assert "5 officers imported: 5 created" in imported.stdout, imported.output
    assert "coordinator 'maybe' is not yes or no" in imported.stdout
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(listed.stdout))}
    assert {email: r["coordinator"] for email, r in rows.items()} == {
        "priya.shah@example.gov.uk": "yes",
        "mark.jones@example.gov.uk": "yes",
        "helen.carter@example.gov.uk": "yes",
        "sam.green@example.gov.uk": "",
        "ann.other@example.gov.uk": "",
    }
    engine = make_engine(f"sqlite:///{tmp_path / 'mb.db'}")
    with Session(engine) as session:
        priya = session.exec(select(Person).where(Person.email == "priya.shah@example.gov.uk"))
        assert roles_of(priya.one()) == {Role.SIGNED_IN, Role.OFFICER, Role.COORDINATOR}
        sam = session.exec(select(Person).where(Person.email == "sam.green@example.gov.uk"))
        assert roles_of(sam.one()) == {Role.SIGNED_IN, Role.OFFICER}

    # The listing imports back unchanged; a file without the column (or a blank cell)
    # takes the flag away, as any other column's empty cell clears what it held.
    exported = tmp_path / "exported.csv"
    exported.write_text(listed.stdout, encoding="utf-8")
    back = invoke(officers_app, "import", exported, "--config", config_file)
    assert "5 officers imported: 0 created, 0 updated, 5 unchanged" in back.stdout
    plain = tmp_path / "plain.csv"
    plain.write_text("name,email,service_area\nPriya Shah,priya.shah@example.gov.uk,Highways\n")
    invoke(officers_app, "import", plain, "--config", config_file)
    with Session(engine) as session:
        priya = session.exec(select(Person).where(Person.email == "priya.shah@example.gov.uk"))
        assert Role.COORDINATOR not in roles_of(priya.one())
    engine.dispose()
