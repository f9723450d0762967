"""The outbox on a real database and a real aiosmtpd: rows queued as the case code queues
them, a sender to the test server, and what reached it."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from email import message_from_bytes, policy

from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge.delivery import compose, outbox
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.mail import tokens
from mailbridge.store.db import transaction
from mailbridge.store.models import OutboxMessage
from tests.servers.smtp import SmtpServer

FROM = "enquiries@example.gov.uk"
MEMBER = "cllr.jane.smith@example.gov.uk"


def queue(
    engine: Engine,
    n: int = 1,
    to: tuple[str, ...] = (MEMBER,),
    case_id: int | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Queue n acknowledgements in one committed transaction; their Message-IDs."""
    ids = []
    with transaction(engine) as session:
        for i in range(n):
            mid = tokens.new_message_id("example.gov.uk", "MQ-2026-00042", b"key")
            raw = compose.compose(
                sender=FROM, sender_name="Member Enquiries", to=list(to),
                subject=f"Enquiry {i}", text=f"Body {i}", html=None, message_id=mid,
            )  # fmt: skip
            outbox.enqueue(
                session, kind="acknowledgement", sender=FROM, recipients=list(to),
                subject=f"Enquiry {i}", raw=raw, message_id=mid, case_id=case_id,
                case_reference="MQ-2026-00042", now=now,
            )  # fmt: skip
            ids.append(mid)
    return ids


def smtp(server: SmtpServer) -> SmtpSender:
    return SmtpSender(server.host, server.port, security="plain", timeout=10)


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def received(server: SmtpServer) -> Counter[str]:
    """How many times each Message-ID reached the server."""
    return Counter(
        str(message_from_bytes(m.content, policy=policy.default)["Message-ID"]).strip("<>")
        for m in server.messages
    )
