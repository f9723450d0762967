"""Who is who: members, officers, coordinators and delegates, and every address of theirs.

`identify` is the one lookup routing needs. The imports are idempotent upserts keyed by
the primary address; a bad row is rejected with its reason and the rest still imported.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import Session, select

from mailbridge.config import Coordinator
from mailbridge.errors import UserError
from mailbridge.models import Person, PersonAddress, PersonKind, utcnow

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")


@dataclass(frozen=True, slots=True)
class Identity:
    person_id: int | None
    kind: str | None
    name: str | None
    address: str
    member_id: int | None  # the member's own id, or the member a delegate writes for


def identify(session: Session, address: str | None) -> Identity:
    """The person an address belongs to; kind None when nobody (active) has it."""
    addr = (address or "").strip().lower()
    if not addr:
        return Identity(None, None, None, addr, None)
    row = session.exec(
        select(Person)
        .join(PersonAddress, PersonAddress.person_id == Person.id)  # type: ignore[arg-type]
        .where(PersonAddress.email == addr, Person.active == True)  # noqa: E712
    ).first()
    if row is None:
        return Identity(None, None, None, addr, None)
    member_id: int | None = None
    if row.kind == PersonKind.MEMBER:
        member_id = row.id
    elif row.kind == PersonKind.DELEGATE and row.delegate_for_id:
        member = session.get(Person, row.delegate_for_id)
        member_id = member.id if member is not None and member.active else None
    return Identity(row.id, row.kind, row.name, addr, member_id)


def sync_coordinators(session: Session, coordinators: Sequence[Coordinator]) -> None:
    """Coordinators come from config; mirror them into the directory, idempotently."""
    for c in coordinators:
        _upsert(session, PersonKind.COORDINATOR, c.name, c.email.lower(), [], {})


# --- imports -----------------------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.created + self.updated + self.unchanged


COLUMNS = {
    "members": ("name", "email", "extra_emails", "division", "district", "party"),
    "officers": ("name", "email", "extra_emails", "service_area", "directorate"),
    "delegates": ("name", "email", "member_email"),
}
REQUIRED = ("name", "email")


def read_csv(path: Path, kind: str) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV (Excel's BOM tolerated), with the expected header checked."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (in Excel: Save As 'CSV UTF-8')") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    needed = [
        c
        for c in (*REQUIRED, *(("member_email",) if kind == "delegates" else ()))
        if c not in header
    ]
    if needed:
        raise UserError(
            f"{path}: missing column(s) {', '.join(needed)}; expected a header line "
            f"'{','.join(COLUMNS[kind])}'"
        )
    rows = []
    for raw in reader:
        rows.append(
            {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        )
    return rows


def _split(addresses: str) -> list[str]:
    return [a.lower() for a in re.split(r"[;\s,]+", addresses or "") if a]


def _owner(session: Session, address: str) -> Person | None:
    row = session.get(PersonAddress, address)
    return session.get(Person, row.person_id) if row else None


def _upsert(
    session: Session,
    kind: str,
    name: str,
    email: str,
    extra: list[str],
    fields: dict[str, str | int | None],
) -> str:
    """Create or update one person; return 'created', 'updated' or 'unchanged'."""
    person = session.exec(select(Person).where(Person.email == email)).first()
    addresses = list(dict.fromkeys([email, *extra]))
    if person is None:
        person = Person(kind=kind, name=name, email=email, **fields)  # type: ignore[arg-type]
        session.add(person)
        session.flush()
        for a in addresses:
            session.add(PersonAddress(email=a, person_id=person.id))  # type: ignore[arg-type]
        session.flush()
        return "created"
    changed = person.name != name or not person.active
    for key, value in fields.items():
        if getattr(person, key) != value:
            setattr(person, key, value)
            changed = True
    person.name = name
    person.active = True
    current = set(
        session.exec(select(PersonAddress.email).where(PersonAddress.person_id == person.id)).all()
    )
    if current != set(addresses):
        session.execute(delete(PersonAddress).where(PersonAddress.person_id == person.id))  # type: ignore[arg-type]
        session.flush()
        for a in addresses:
            session.add(PersonAddress(email=a, person_id=person.id))  # type: ignore[arg-type]
        changed = True
    if changed:
        person.updated_at = utcnow()
        session.add(person)
    session.flush()
    return "updated" if changed else "unchanged"


def _check_row(
    session: Session, kind: str, row: dict[str, str], seen: set[str]
) -> tuple[str, str, list[str]] | str:
    """Validated (name, email, extra) for a row, or the reason it is rejected."""
    name = row.get("name", "")
    email = row.get("email", "").lower()
    if not name:
        return "name is empty"
    if not _EMAIL.match(email):
        return f"email '{row.get('email', '')}' is not a valid address"
    extra = _split(row.get("extra_emails", ""))
    for a in extra:
        if not _EMAIL.match(a):
            return f"extra address '{a}' is not a valid address"
    for a in [email, *extra]:
        if a in seen:
            return f"{a} appears more than once in the file"
    for a in [email, *extra]:
        owner = _owner(session, a)
        if owner is None or owner.email == email:
            continue
        return f"{a} already belongs to {owner.name} ({owner.kind}, {owner.email})"
    existing = session.exec(select(Person).where(Person.email == email)).first()
    if existing is not None and existing.kind != kind:
        return f"{email} is already registered as a {existing.kind}, not a {kind}"
    return name, email, extra


def _import(
    session: Session,
    kind: str,
    rows: Iterable[dict[str, str]],
    fields_of: Callable[[Session, dict[str, str]], dict[str, str | int | None] | str],
) -> ImportReport:
    report = ImportReport()
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        checked = _check_row(session, kind, row, seen)
        if isinstance(checked, str):
            report.rejected.append((number, checked))
            continue
        name, email, extra = checked
        fields = fields_of(session, row)
        if isinstance(fields, str):
            report.rejected.append((number, fields))
            continue
        seen.update([email, *extra])
        outcome = _upsert(session, kind, name, email, extra, fields)
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def import_members(session: Session, rows: Iterable[dict[str, str]]) -> ImportReport:
    def fields(_s: Session, row: dict[str, str]) -> dict[str, str | int | None]:
        return {k: row.get(k) or None for k in ("division", "district", "party")}

    return _import(session, PersonKind.MEMBER, rows, fields)


def import_officers(session: Session, rows: Iterable[dict[str, str]]) -> ImportReport:
    def fields(_s: Session, row: dict[str, str]) -> dict[str, str | int | None]:
        return {k: row.get(k) or None for k in ("service_area", "directorate")}

    return _import(session, PersonKind.OFFICER, rows, fields)


def import_delegates(session: Session, rows: Iterable[dict[str, str]]) -> ImportReport:
    def fields(s: Session, row: dict[str, str]) -> dict[str, str | int | None] | str:
        member_email = row.get("member_email", "").lower()
        member = s.exec(
            select(Person).where(Person.email == member_email, Person.kind == PersonKind.MEMBER)
        ).first()
        if member is None:
            return f"member_email '{row.get('member_email', '')}' is not a known member"
        return {"delegate_for_id": member.id}

    return _import(session, PersonKind.DELEGATE, rows, fields)


IMPORTERS = {
    "members": import_members,
    "officers": import_officers,
    "delegates": import_delegates,
}


def list_people(session: Session, kind: str) -> list[tuple[Person, list[str]]]:
    people = session.exec(select(Person).where(Person.kind == kind).order_by(Person.name)).all()
    out = []
    for p in people:
        extra = session.exec(
            select(PersonAddress.email).where(
                PersonAddress.person_id == p.id, PersonAddress.email != p.email
            )
        ).all()
        out.append((p, sorted(extra)))
    return out
