"""Who is who: members, officers, coordinators and delegates, and every address of theirs.

`identify` is the one lookup routing needs. The imports are idempotent upserts keyed by the
primary address, all in the caller's transaction; a bad row is rejected with its reason and
the rest are still imported, so one typo never blocks a whole council's list.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, Select, and_, bindparam, delete
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from mailbridge.config import Coordinator
from mailbridge.errors import ConfigError, UserError
from mailbridge.spreadsheet import restore
from mailbridge.store.db import transaction
from mailbridge.store.models import AddressFlag, Person, PersonAddress, PersonKind, utcnow

# One @, a dot in the domain, no spaces (nor the separators people paste by mistake).
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]+$")
_SEPARATORS = re.compile(r"[;,\s]+")
MAX_EMAIL = 254  # the column sizes in models.Person / PersonAddress
MAX_TEXT = 200
ROW = "_row"  # optional key of a row dict: the row number shown when it is rejected


@dataclass(frozen=True, slots=True)
class Identity:
    person_id: int | None
    kind: str | None
    name: str | None
    address: str
    member_id: int | None  # the member's own id, or the member a delegate writes for


def _identify_statement() -> Select:
    member = aliased(Person)
    return (
        select(Person.id, Person.kind, Person.name, member.id)
        .select_from(PersonAddress)
        .join(Person, Person.id == PersonAddress.person_id)  # type: ignore[arg-type]
        .outerjoin(
            member,
            and_(
                member.id == Person.delegate_for_id,  # type: ignore[arg-type]
                member.kind == PersonKind.MEMBER,
                member.active == True,  # noqa: E712
            ),
        )
        .where(PersonAddress.email == bindparam("address"), Person.active == True)  # noqa: E712
    )


# Built once: constructing the statement costs more than running it, once per message.
_IDENTIFY = _identify_statement()


def identify(session: Session, address: str | None) -> Identity:
    """The person an address belongs to; kind None when nobody (active) has it."""
    addr = (address or "").strip().lower()
    if not addr:
        return Identity(None, None, None, addr, None)
    row = session.connection().execute(_IDENTIFY, {"address": addr}).first()
    if row is None:
        return Identity(None, None, None, addr, None)
    person_id, kind, name, delegate_for = row
    member_id = person_id if kind == PersonKind.MEMBER else None
    if kind == PersonKind.DELEGATE:
        member_id = delegate_for
    return Identity(person_id, kind, name, addr, member_id)


def person_of_kind(session: Session, email: str, kind: PersonKind, option: str) -> Person:
    """The directory's `kind` of person at `email`, for a coordinator's `option` (--lead,
    --member, ...), or a UserError that says what is wrong and how to put it right."""
    address = email.strip()
    who = identify(session, address)
    if who.person_id is None:
        group = f"{kind}s"
        raise UserError(
            f"{option} {address}: nobody in the directory has this address "
            f"(import {group} with `mailbridge {group} import {group}.csv`)"
        )
    if who.kind != kind:
        raise UserError(f"{option} {address} is {_a(str(who.kind))}, not {_a(kind)}")
    person = session.get(Person, who.person_id)
    assert person is not None  # identify read it in this transaction
    return person


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def sync_coordinators(session: Session, coordinators: Sequence[Coordinator]) -> None:
    """Mirror config's coordinators into the directory; one removed from config stops counting.

    Config is the only source of coordinators, so this is safe to call at every start.
    """
    wanted: set[str] = set()
    for c in coordinators:
        email = c.email.strip().lower()
        problem = _conflict(session, PersonKind.COORDINATOR, email, [email])
        if problem:
            raise ConfigError(f"[[coordinators]] {c.name} <{email}>: {problem}")
        _upsert(session, PersonKind.COORDINATOR, c.name, email, [], {})
        wanted.add(email)
    for person in session.exec(
        select(Person).where(Person.kind == PersonKind.COORDINATOR, Person.active == True)  # noqa: E712
    ).all():
        if person.email not in wanted:
            person.active = False
            person.updated_at = utcnow()
            session.add(person)
    session.flush()


# --- reading CSV files -------------------------------------------------------------------

COLUMNS = {
    "members": ("name", "email", "extra_emails", "division", "district", "party"),
    "officers": ("name", "email", "extra_emails", "service_area", "directorate", "coordinator"),
    "delegates": ("name", "email", "member_email"),
}
# The officers' `coordinator` column: an officer who also works in the Member Support Team
# (signs in to the web console as a coordinator). Empty or missing is no.
YES = frozenset({"yes", "y", "true", "1"})
NO = frozenset({"", "no", "n", "false", "0"})
REQUIRED = {
    "members": ("name", "email"),
    "officers": ("name", "email"),
    "delegates": ("name", "email", "member_email"),
}


def read_csv(path: Path | str, kind: str | None = None) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV (Excel's BOM tolerated) keyed by lowercased header names.

    With `kind` ("members", "officers", "delegates") the header must have that file's
    required columns. Each row carries its spreadsheet row number under `ROW` (the header is
    row 1); rows with every cell empty, as Excel leaves at the end, are skipped.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a folder, not a CSV file") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (in Excel: Save As 'CSV UTF-8')") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read it: {exc.strerror}") from exc
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UserError(f"{path}: not a readable CSV file: {exc}") from exc
    header = [h.strip().lower() for h in records[0]] if records else []
    if kind is not None:
        missing = [c for c in REQUIRED[kind] if c not in header]
        if missing:
            raise UserError(
                f"{path}: missing column(s) {', '.join(missing)}; the first line must be "
                f"the header '{','.join(COLUMNS[kind])}'"
            )
    rows: list[dict[str, str]] = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        row = {
            name: restore(cell.strip()) for name, cell in zip(header, record, strict=False) if name
        }
        row[ROW] = str(number)
        rows.append(row)
    return rows


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


Fields = dict[str, str | int | None]


def import_members(session: Session, rows: Iterable[dict[str, str]]) -> ImportReport:
    """Councillors: name, email, extra_emails, division, district, party."""
    return _import(session, PersonKind.MEMBER, rows, _text_fields("division", "district", "party"))


def import_officers(session: Session, rows: Iterable[dict[str, str]]) -> ImportReport:
    """Officers who answer enquiries: name, email, extra_emails, service_area, directorate,
    coordinator (yes for one who also works as a coordinator)."""
    texts = _text_fields("service_area", "directorate")

    def fields(s: Session, row: dict[str, str]) -> Fields | str:
        found = texts(s, row)
        if isinstance(found, str):
            return found
        given = row.get("coordinator", "").strip()
        if given.lower() not in YES | NO:
            return f"coordinator '{given[:20]}' is not yes or no"
        return {**found, "coordinator": given.lower() in YES}

    return _import(session, PersonKind.OFFICER, rows, fields)


def import_delegates(session: Session, rows: Iterable[dict[str, str]]) -> ImportReport:
    """A member's assistant who may write for them: name, email, member_email."""

    def fields(s: Session, row: dict[str, str]) -> Fields | str:
        given = row.get("member_email", "")
        member = s.exec(
            select(Person).where(
                Person.email == given.lower(),
                Person.kind == PersonKind.MEMBER,
                Person.active == True,  # noqa: E712
            )
        ).first()
        if member is None:
            return f"member_email '{given}' is not a known member (import members first)"
        return {"delegate_for_id": member.id}

    return _import(session, PersonKind.DELEGATE, rows, fields)


IMPORTERS: dict[str, Callable[[Session, Iterable[dict[str, str]]], ImportReport]] = {
    "members": import_members,
    "officers": import_officers,
    "delegates": import_delegates,
}


def import_rows(engine: Engine, group: str, rows: Iterable[dict[str, str]]) -> ImportReport:
    """`members|officers|delegates import`: the whole file in one transaction, so a file
    imported twice, or stopped half way, leaves the directory as one import would."""
    with transaction(engine) as session:
        return IMPORTERS[group](session, rows)


def adopt_coordinators(engine: Engine, coordinators: Sequence[Coordinator]) -> None:
    """The service starts with the config's coordinators in the directory."""
    with transaction(engine) as session:
        sync_coordinators(session, coordinators)


def list_people(session: Session, kind: str) -> list[tuple[Person, list[str]]]:
    """People of one kind by name, each with their extra addresses (primary left out)."""
    people = session.exec(select(Person).where(Person.kind == kind).order_by(Person.name)).all()
    extra: dict[int, list[str]] = {}
    rows = session.exec(
        select(PersonAddress.person_id, PersonAddress.email)
        .join(Person, Person.id == PersonAddress.person_id)  # type: ignore[arg-type]
        .where(Person.kind == kind, PersonAddress.email != Person.email)
        .order_by(PersonAddress.email)
    ).all()
    for person_id, email in rows:
        extra.setdefault(person_id, []).append(email)
    return [(p, extra.get(p.id or 0, [])) for p in people]


def _text_fields(*names: str) -> Callable[[Session, dict[str, str]], Fields | str]:
    def fields(_s: Session, row: dict[str, str]) -> Fields | str:
        for n in names:
            if len(row.get(n, "")) > MAX_TEXT:
                return f"{n} is longer than {MAX_TEXT} characters"
        return {n: row.get(n) or None for n in names}

    return fields


def _import(
    session: Session,
    kind: str,
    rows: Iterable[dict[str, str]],
    fields_of: Callable[[Session, dict[str, str]], Fields | str],
) -> ImportReport:
    report = ImportReport()
    seen: set[str] = set()
    for index, row in enumerate(rows, start=2):  # row 1 is the header
        number = int(row.get(ROW) or index)
        checked = _check_row(session, kind, row, seen)
        if isinstance(checked, str):
            report.rejected.append((number, checked))
            continue
        fields = fields_of(session, row)
        if isinstance(fields, str):
            report.rejected.append((number, fields))
            continue
        name, email, extra = checked
        seen.update([email, *extra])
        outcome = _upsert(session, kind, name, email, extra, fields)
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _check_row(
    session: Session, kind: str, row: dict[str, str], seen: set[str]
) -> tuple[str, str, list[str]] | str:
    """Validated (name, email, extra addresses) for a row, or why it is rejected."""
    name = row.get("name", "").strip()
    given = row.get("email", "").strip()
    email = given.lower()
    if not name:
        return "name is empty"
    if len(name) > MAX_TEXT:
        return f"name is longer than {MAX_TEXT} characters"
    if not given:
        return "email is empty"
    if not valid_address(email):
        return f"email '{given}' is not a valid address"
    extra: list[str] = []
    for a in _SEPARATORS.split(row.get("extra_emails", "")):
        if not a:
            continue
        if not valid_address(a.lower()):
            return f"extra address '{a}' is not a valid address"
        if a.lower() != email and a.lower() not in extra:
            extra.append(a.lower())
    for a in [email, *extra]:
        if a in seen:
            return f"{a} appears more than once in the file (an earlier row has it)"
    return _conflict(session, kind, email, [email, *extra]) or (name, email, extra)


def _conflict(session: Session, kind: str, email: str, addresses: list[str]) -> str | None:
    """Why these addresses cannot be this person's, or None when they can."""
    existing = session.exec(select(Person).where(Person.email == email)).first()
    if existing is not None and existing.kind != kind:
        return (
            f"{email} is already registered as {_a(existing.kind)} ({existing.name}), "
            f"so it cannot also be {_a(kind)}"
        )
    for a in addresses:
        owned = session.get(PersonAddress, a)
        if owned is None or (existing is not None and owned.person_id == existing.id):
            continue
        owner = session.get(Person, owned.person_id)
        who = f"{owner.name}, {owner.kind} {owner.email}" if owner else f"person {owned.person_id}"
        inactive = "" if owner is None or owner.active else ", inactive"
        return f"{a} already belongs to another person ({who}{inactive})"
    return None


def _upsert(
    session: Session, kind: str, name: str, email: str, extra: list[str], fields: Fields
) -> str:
    """Create or update one person and their addresses: 'created', 'updated' or 'unchanged'."""
    person = session.exec(select(Person).where(Person.email == email)).first()
    wanted = [email, *(a for a in extra if a != email)]
    if person is None:
        person = Person(kind=kind, name=name, email=email, **fields)  # type: ignore[arg-type]
        session.add(person)
        session.flush()
        session.add_all(PersonAddress(email=a, person_id=person.id) for a in wanted)  # type: ignore[arg-type]
        session.flush()
        return "created"
    changed = person.name != name or not person.active
    person.name = name
    person.active = True
    for key, value in fields.items():
        if getattr(person, key) != value:
            setattr(person, key, value)
            changed = True
    current = set(
        session.exec(select(PersonAddress.email).where(PersonAddress.person_id == person.id)).all()
    )
    gone = current - set(wanted)
    if gone:
        session.execute(
            delete(PersonAddress).where(PersonAddress.email.in_(gone))  # type: ignore[attr-defined]
        )
    session.add_all(
        PersonAddress(email=a, person_id=person.id)  # type: ignore[arg-type]
        for a in wanted
        if a not in current
    )
    if changed or gone or set(wanted) - current:
        person.updated_at = utcnow()
        session.add(person)
        session.flush()
        return "updated"
    return "unchanged"


def valid_address(address: str) -> bool:
    return len(address) <= MAX_EMAIL and _EMAIL.match(address) is not None


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


# --- addresses that bounced --------------------------------------------------------------


def flagged_addresses(session: Session) -> list[AddressFlag]:
    """Addresses that bounced permanently: mailbridge sends them nothing until cleared."""
    return list(session.exec(select(AddressFlag).order_by(AddressFlag.flagged_at)).all())


def clear_flag(engine: Engine, email: str) -> AddressFlag:
    """A person checked the address: mail to it may go out again. Its own transaction."""
    with transaction(engine) as session:
        flag = session.get(AddressFlag, email.strip().lower())
        if flag is None:
            raise UserError(f"{email.strip()} is not flagged (see `mailbridge addresses list`)")
        session.delete(flag)
        return flag
