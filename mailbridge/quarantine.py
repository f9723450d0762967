"""Messages kept aside: list them, and retry one from its stored raw bytes."""

from __future__ import annotations

from sqlmodel import Session, select

from mailbridge.errors import UserError
from mailbridge.ingest import Outcome, Processor
from mailbridge.models import Message, QuarantineItem, QuarantineStatus
from mailbridge.services import Services


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
