"""Messages kept aside: list them, retry one from its stored raw bytes, or accept it onto
the case it points at."""

from __future__ import annotations

from sqlmodel import Session, select

from mailbridge.cases import inbound
from mailbridge.cases.facts import load_cases
from mailbridge.cases.records import Inbound, add_event
from mailbridge.errors import UserError
from mailbridge.mail import replies
from mailbridge.pipeline.routing import Contribution
from mailbridge.pipeline.steps import Outcome, Processor, parse_raw
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.models import Message, QuarantineItem, QuarantineStatus, utcnow


def list_items(services: Services, *, include_resolved: bool = False) -> list[QuarantineItem]:
    with Session(services.engine) as session:
        query = select(QuarantineItem).order_by(QuarantineItem.id)  # type: ignore[arg-type]
        if not include_resolved:
            query = query.where(QuarantineItem.status == QuarantineStatus.WAITING)
        return list(session.exec(query).all())


def get_item(services: Services, item_id: int) -> QuarantineItem:
    with Session(services.engine) as session:
        item = session.get(QuarantineItem, item_id)
    if item is None:
        raise UserError(
            f"no quarantined message has id {item_id} (see `mailbridge quarantine list`)"
        )
    return item


def retry(services: Services, item_id: int) -> Outcome:
    """Run the message through the pipeline again, e.g. after its sender was added."""
    item = get_item(services, item_id)
    if item.status != QuarantineStatus.WAITING:
        raise UserError(f"quarantined message {item_id} was already {item.status}")
    if not services.blobs.exists(item.raw_sha256):
        raise UserError(
            f"the stored copy of quarantined message {item_id} is missing from "
            f"{services.blobs.root}; it cannot be retried"
        )
    received_at = None
    if item.message_id is not None:
        with Session(services.engine) as session:
            message = session.get(Message, item.message_id)
            received_at = message.received_at if message else None
    return Processor(services).process(
        services.blobs.get(item.raw_sha256), received_at, retry_of=item.id
    )


ACCEPT_AS = ("contribution",)


def accept(services: Services, item_id: int, as_: str = "contribution") -> str:
    """Attach a quarantined message to the case it points at, after a coordinator checked it.

    For a colleague an officer forwarded the enquiry to, say: never done automatically, as a
    guessed reference must not let a stranger write into a case. Returns the case reference.
    """
    if as_ not in ACCEPT_AS:
        raise UserError(f"--as must be one of: {', '.join(ACCEPT_AS)}")
    item = get_item(services, item_id)
    if item.status != QuarantineStatus.WAITING:
        raise UserError(f"quarantined message {item_id} was already {item.status}")
    if item.case_id is None:
        raise UserError(
            f"quarantined message {item_id} does not point at a case; "
            "`mailbridge quarantine retry` it after adding its sender instead"
        )
    if not services.blobs.exists(item.raw_sha256):
        raise UserError(
            f"the stored copy of quarantined message {item_id} is missing from "
            f"{services.blobs.root}; it cannot be accepted"
        )
    raw = services.blobs.get(item.raw_sha256)
    parsed = parse_raw(raw, services.config.storage.max_filename_length)
    with transaction(services.engine) as session:
        entry = session.get(QuarantineItem, item_id)
        assert entry is not None
        received_at = utcnow()
        if entry.message_id is not None:
            old = session.get(Message, entry.message_id)
            if old is not None:
                received_at = old.received_at
                entry.message_id = None
                session.add(entry)
                session.flush()
                session.delete(old)
                session.flush()
        entry.status = QuarantineStatus.ACCEPTED
        entry.resolved_at = utcnow()
        session.add(entry)
        [facts] = load_cases(
            session,
            ids=[item.case_id],
            calendar=services.calendar,
            today=services.calendar.local_date(utcnow()),
        )
        item_in = Inbound(parsed, received_at, len(raw), replies.extract_reply(parsed.body_text))
        applied = inbound.contribution(session, services, item_in, Contribution(facts))
        add_event(
            session, facts.id, "quarantine_accepted",
            f"quarantined message {item_id} from {parsed.from_address} accepted as a "
            f"{as_} by a coordinator",
        )  # fmt: skip
    assert applied.reference is not None
    return applied.reference
