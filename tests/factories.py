"""Building blocks for tests: a config in a temp dir, services, and a seeded directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from typer.testing import Result

from mailbridge.config import Config
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.models import Person, PersonAddress

FIXTURES = Path(__file__).parent / "fixtures"
MAIL = FIXTURES / "mail"

AREAS = [
    {
        "name": "Highways",
        "directorate": "Environment and Transport",
        "keywords": ["pothole", "road", "pavement"],
    },
    {
        "name": "School Transport",
        "directorate": "Children's Services",
        "keywords": ["school transport", "school bus"],
    },
    {
        "name": "Adult Social Care",
        "directorate": "Adults and Health",
        "keywords": ["care package", "carer", "assessment"],
    },
]


# 32 bytes as 64 hexadecimal digits, the shape `mailbridge keys generate` writes; tests/conftest.py
# puts it in the environment, where every test config's [security] finds it.
TEST_SIGNING_KEY = "9f2b6c0e4d8a1f3b7e5c9a2d6f0b4e8c1a5d9f3b7c2e6a0d4f8b1c5e9a3d7f2b"
TEST_SIGNING_KEY_ENV = "MAILBRIDGE_TEST_SIGNING_KEY"

# The test councils authenticate nobody, as the demo does; the tests of the trust policy
# set their own `trust` section.
NO_TRUST: dict[str, Any] = {
    role: {"require": "none"}
    for role in ("officers", "coordinators", "members", "delegates", "delivery_reports")
}
NO_TRUST_TOML = "\n".join(f'[trust.{role}]\nrequire = "none"' for role in NO_TRUST) + "\n"
# Digests go out by the clock (a member's on Monday mornings): a test of a running service
# that counts mail turns them off, and signs with the test key.
QUIET_SERVICE_TOML = """[security]
signing_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"
[schedule]
coordinator_digest_at = ""
member_digest_at = ""
management_summary_at = ""
"""


def make_config(tmp_path: Path, db_url: str, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "trust": NO_TRUST,
        "council": {"name": "Example County Council"},
        "mailbox": {"url": f"maildir:{tmp_path / 'mailbox'}"},
        "smtp": {
            "url": f"maildir:{tmp_path / 'outbox'}",
            "from_address": "enquiries@example.gov.uk",
        },
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data")},
        "security": {"signing_key_env": TEST_SIGNING_KEY_ENV},
        "service_areas": AREAS,
        "coordinators": [{"name": "Member Support", "email": "member.support@example.gov.uk"}],
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return Config.model_validate(data)


def make_services(tmp_path: Path, engine: Engine, **sections: dict[str, Any]) -> Services:
    url = engine.url.render_as_string(hide_password=False)
    return Services.build(make_config(tmp_path, url, **sections), engine)


def add_person(
    engine: Engine,
    kind: str,
    name: str,
    email: str,
    *extra: str,
    delegate_for: int | None = None,
    **fields: Any,
) -> int:
    with transaction(engine) as session:
        person = Person(
            kind=kind, name=name, email=email.lower(), delegate_for_id=delegate_for, **fields
        )
        session.add(person)
        session.flush()
        for address in (email, *extra):
            session.add(PersonAddress(email=address.lower(), person_id=person.id))
        return person.id  # type: ignore[return-value]


def seed_directory(engine: Engine) -> dict[str, int]:
    """Two councillors, a delegate for one of them, an officer and a coordinator."""
    jane = add_person(
        engine,
        "member",
        "Cllr Jane Smith",
        "cllr.jane.smith@example.gov.uk",
        "jane.smith@home.example.org",
        division="Bowden",
        district="Harborough",
        party="Independent",
    )
    raj = add_person(
        engine,
        "member",
        "Cllr Raj Patel",
        "raj.patel@example.gov.uk",
        division="Oadby",
        district="Oadby and Wigston",
        party="Labour",
    )
    tom = add_person(engine, "delegate", "Tom Baker", "tom.baker@example.gov.uk", delegate_for=jane)
    officer = add_person(
        engine,
        "officer",
        "Priya Shah",
        "priya.shah@example.gov.uk",
        service_area="Highways",
        directorate="Environment and Transport",
    )
    coordinator = add_person(
        engine, "coordinator", "Member Support", "member.support@example.gov.uk"
    )
    return {"jane": jane, "raj": raj, "tom": tom, "officer": officer, "coordinator": coordinator}


def fixture_bytes(name: str) -> bytes:
    return (MAIL / name).read_bytes()


# --- command-line results (typer.testing.CliRunner) ---------------------------------------


def ok_lines(result: Result) -> list[str]:
    """A command that succeeded: its standard output, line by line."""
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception
    return result.stdout.splitlines()


def one_error(result: Result, text: str) -> None:
    """A person's mistake: exit 1 and exactly one `error:` line, never a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [f"error: {text}"], result.stderr
