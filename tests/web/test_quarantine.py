"""The quarantine pages on each database: real mail quarantined by a real pass, listed,
shown (its text escaped, never its HTML), and retried, accepted and released through the
functions `mailbridge quarantine` calls, each as the signed-in coordinator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from mailbridge.store.models import AuditRecord, QuarantineItem
from mailbridge.web.pages import quarantine as quarantine_page
from tests.factories import add_person
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import ANN, JANE, MAILBOX, PRIYA, SUPPORT, new_email, reply
from tests.web.conftest import Web, make_web

STRANGER = "bob@example.org"
COORDINATOR = f"{SUPPORT} (web, testclient)"  # how an action of the signed-in coordinator is named


def stranger_mail(
    subject: str = "Bins not collected", text: str = "Our bins were missed."
) -> bytes:
    return new_email(STRANGER, subject, text, name="Bob Reid")


def quarantine_one(web: Web, raw: bytes) -> QuarantineItem:
    """`raw` delivered and quarantined by a real pass: its item."""
    report = web.council.deliver(raw, at=FIXED_NOW)
    assert report.quarantined == 1, report
    with Session(web.engine) as session:
        return session.exec(select(QuarantineItem).order_by(col(QuarantineItem.id).desc())).first()  # type: ignore[return-value]


def item(web: Web, item_id: int) -> QuarantineItem:
    with Session(web.engine) as session:
        found = session.get(QuarantineItem, item_id)
        assert found is not None
        return found


def audit_of(web: Web, action: str) -> list[AuditRecord]:
    with Session(web.engine) as session:
        query = select(AuditRecord).where(AuditRecord.action == action)
        return list(session.exec(query.order_by(col(AuditRecord.id))))


def banner(page: str) -> str:
    found = re.search(r'notification-banner__heading">([^<]*)<', page)
    assert found, page
    return found[1]


def error_summary(page: str) -> str:
    found = re.search(r'<li><a href="#actions">([^<]*)</a></li>', page)
    assert found, page
    return found[1]


def post(client: TestClient, csrf: str, path: str, **form: str) -> object:
    return client.post(path, data={"csrf": csrf, **form})


# --- the list ---------------------------------------------------------------------------


def test_the_list_shows_a_strangers_message_with_its_reason(web: Web) -> None:
    held = quarantine_one(web, stranger_mail())
    client, _ = web.signed_in("coordinator")
    page = client.get("/quarantine")
    assert page.status_code == 200
    assert "Bins not collected" in page.text and STRANGER in page.text
    assert f'href="/quarantine/{held.id}"' in page.text
    assert "unknown_sender" in page.text and "is not a registered member" in page.text
    assert "Showing 1 to 1 of 1 message, newest first." in page.text
    [listed] = audit_of(web, "quarantine.list")
    assert (listed.actor, listed.channel) == (SUPPORT, "web")
    assert listed.detail == "waiting; from 1 (50 a page); 1 messages shown"
    assert "Nothing is waiting" in client.get("/quarantine?status=resolved").text.replace(
        "No quarantined messages to show.", "Nothing is waiting"
    )


def test_the_list_is_newest_first_in_pages_and_filters_by_status(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quarantine_page, "PAGE_SIZE", 2)
    ids = [quarantine_one(web, stranger_mail(f"Message {n}")).id for n in (1, 2, 3)]
    client, csrf = web.signed_in("coordinator")
    first = client.get("/quarantine").text
    assert first.index("Message 3") < first.index("Message 2") and "Message 1" not in first
    assert "Showing 1 to 2 of 3 messages" in first and "Page 1 of 2" in first
    assert 'href="/quarantine?status=waiting&amp;page=2"' in first
    second = client.get("/quarantine?page=2").text
    assert "Message 1" in second and "Message 2" not in second
    assert "Showing 3 to 3 of 3 messages" in second
    assert "There is nothing on page 9" in client.get("/quarantine?page=9").text

    assert post(client, csrf, f"/quarantine/{ids[0]}/release").status_code == 303  # type: ignore[attr-defined]
    waiting = client.get("/quarantine").text
    assert "Message 1" not in waiting and "of 2 messages" in waiting
    resolved = client.get("/quarantine?status=resolved").text
    assert "Message 1" in resolved and "released" in resolved and "Message 2" not in resolved
    everything = client.get("/quarantine?status=all&page=2").text
    assert "Message 1" in everything and "Showing 3 to 3 of 3" in everything
    assert client.get("/quarantine?status=gone").status_code == 400
    assert client.get("/quarantine?page=0").status_code == 400


# --- one message ------------------------------------------------------------------------


def hostile_mail() -> bytes:
    """A stranger's email whose subject, text and HTML carry markup and script."""
    msg = EmailMessage()
    msg["From"] = f"Bob <{STRANGER}>"
    msg["To"] = MAILBOX
    msg["Cc"] = "someone@example.org"
    msg["Subject"] = "<script>alert('subject')</script> Bins"
    msg["Date"] = format_datetime(FIXED_NOW)
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["Authentication-Results"] = "mx.example.gov.uk; dmarc=fail header.from=example.org"
    msg.set_content("Hello <b>there</b>\n<script>alert('text')</script>\nSecond line.")
    msg.add_alternative(
        "<html><body><p>Hello</p><img src=x onerror=alert('html')>"
        "<script>alert('html')</script></body></html>",
        subtype="html",
    )
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="a.pdf")
    return msg.as_bytes()


def test_a_message_is_shown_with_its_header_escaped_text_and_attachments(web: Web) -> None:
    held = quarantine_one(web, hostile_mail())
    client, _ = web.signed_in("coordinator")
    page = client.get(f"/quarantine/{held.id}")
    assert page.status_code == 200
    body = page.text
    assert "<script>alert" not in body and "onerror" not in body and "<b>there" not in body
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; Bins" in body
    assert "Hello &lt;b&gt;there&lt;/b&gt;\n&lt;script&gt;alert(&#39;text&#39;)" in body
    for name, value in (
        ("From", f"Bob &lt;{STRANGER}&gt;"),
        ("Cc", "someone@example.org"),
        ("Message-ID", "@example.org&gt;"),
        ("Authentication-Results", "dmarc=fail header.from=example.org"),
    ):
        assert re.search(
            rf'key">{name}</dt>\s*<dd class="govuk-summary-list__value mb-break">[^<]*{value}',
            body,
        ), name
    assert re.search(r"a\.pdf</td>\s*<td[^>]*>application/pdf</td>\s*<td[^>]*>13</td>", body)
    assert "unknown_sender" in body
    [shown] = audit_of(web, "quarantine.show")
    assert (shown.actor, shown.channel, shown.origin) == (SUPPORT, "web", "testclient")
    assert shown.detail == f"quarantined message {held.id} (unknown_sender)"
    # A stranger's message points at no case: nothing to accept, only retry or release.
    assert "/accept" not in body and f"/quarantine/{held.id}/retry" in body


def test_an_unknown_id_is_one_clear_line(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    page = client.get("/quarantine/999")
    assert page.status_code == 400
    assert "no quarantined message has id 999" in page.text
    assert client.get("/quarantine/99999999999").status_code == 400  # no database error


# --- acting on it -----------------------------------------------------------------------


def test_accepting_as_a_contribution_adds_it_to_the_case_once(web: Web) -> None:
    reference = web.pothole()
    web.council.assign(PRIYA)
    [notice] = [m for m in web.council.new_mail() if PRIYA in str(m["To"])]
    held = quarantine_one(web, reply(notice, ANN, "Our survey is attached.", name="Ann Other"))
    assert held.reason_code == "not_party_to_case"
    client, csrf = web.signed_in("coordinator")
    shown = client.get(f"/quarantine/{held.id}").text
    assert f"Accept as a contribution to {reference}" in shown

    done = post(client, csrf, f"/quarantine/{held.id}/accept", **{"as": "contribution"})
    assert done.status_code == 303  # type: ignore[attr-defined]
    location = done.headers["location"]  # type: ignore[attr-defined]
    assert location == f"/quarantine/{held.id}?done=contribution&case={reference}"
    assert banner(client.get(location).text) == (
        f"Accepted: it is now a contribution on its case. Case {reference}."
    )
    assert item(web, held.id or 0).status == "accepted"
    [accepted] = web.council.events(reference, "quarantine_accepted")
    assert accepted.actor == COORDINATOR
    assert "contribution" in web.council.kinds(reference)

    again = post(client, csrf, f"/quarantine/{held.id}/accept", **{"as": "contribution"})
    assert again.status_code == 400  # type: ignore[attr-defined]
    assert error_summary(again.text) == f"quarantined message {held.id} was already accepted"  # type: ignore[attr-defined]
    assert len(web.council.events(reference, "quarantine_accepted")) == 1


@pytest.fixture
def flooded(tmp_path: Path, migrated_db_url: str) -> Iterator[Web]:
    """A console whose council lets a person open one case an hour."""
    from mailbridge.store.db import make_engine

    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, limits={"new_cases_per_sender_per_hour": 1})
    yield site
    for client in site.clients:
        client.close()
    engine.dispose()


def test_accepting_a_flood_item_opens_its_case(flooded: Web) -> None:
    web = flooded
    web.council.deliver(new_email(JANE, "Streetlight out", "The light is out."), at=FIXED_NOW)
    held = quarantine_one(web, new_email(JANE, "Blocked drain", "The drain is blocked."))
    assert held.reason_code == "flood"
    client, csrf = web.signed_in("coordinator")
    assert "Accept as a new case" in client.get(f"/quarantine/{held.id}").text
    done = post(client, csrf, f"/quarantine/{held.id}/accept")
    location = done.headers["location"]  # type: ignore[attr-defined]
    assert location == f"/quarantine/{held.id}?done=opened&case=MQ-2026-00002"
    assert banner(client.get(location).text) == "Accepted: it opened a case. Case MQ-2026-00002."
    assert web.council.case("MQ-2026-00002").subject == "Blocked drain"
    [event] = web.council.events("MQ-2026-00002", "quarantine_accepted")
    assert event.actor == COORDINATOR
    # A forged reference in the address is not echoed: only an existing case is named.
    forged = client.get(f"/quarantine/{held.id}?done=opened&case=MQ-2026-09999").text
    assert banner(forged) == "Accepted: it opened a case." and "MQ-2026-09999" not in forged
    assert "free words" not in client.get(f"/quarantine/{held.id}?done=free+words").text


def test_retry_quarantines_again_until_the_sender_is_known_then_opens_a_case(web: Web) -> None:
    held = quarantine_one(web, stranger_mail())
    client, csrf = web.signed_in("coordinator")
    again = post(client, csrf, f"/quarantine/{held.id}/retry")
    location = again.headers["location"]  # type: ignore[attr-defined]
    new_id = int(re.fullmatch(r"/quarantine/(\d+)\?done=again", location)[1])  # type: ignore[index]
    assert new_id != held.id and item(web, held.id or 0).status == "retried"
    assert banner(client.get(location).text).startswith("It was quarantined again")

    add_person(web.engine, "member", "Cllr Bob Reid", STRANGER)
    opened = post(client, csrf, f"/quarantine/{new_id}/retry")
    assert opened.headers["location"] == f"/quarantine/{new_id}?done=opened&case=MQ-2026-00001"  # type: ignore[attr-defined]
    assert web.council.case("MQ-2026-00001").subject == "Bins not collected"

    retries = [(r.actor, r.case_reference, r.detail) for r in audit_of(web, "quarantine.retry")]
    assert retries == [
        (SUPPORT, None, f"quarantined message {held.id} retried: quarantined again as {new_id}"),
        (SUPPORT, "MQ-2026-00001", f"quarantined message {new_id} retried: opened MQ-2026-00001"),
    ]
    twice = post(client, csrf, f"/quarantine/{new_id}/retry")
    assert twice.status_code == 400  # type: ignore[attr-defined]
    assert error_summary(twice.text) == f"quarantined message {new_id} was already retried"  # type: ignore[attr-defined]


def test_release_lets_it_go_once_and_records_who(web: Web) -> None:
    raw = stranger_mail()
    held = quarantine_one(web, raw)
    client, csrf = web.signed_in("coordinator")
    done = post(client, csrf, f"/quarantine/{held.id}/release")
    assert done.headers["location"] == f"/quarantine/{held.id}?done=released"  # type: ignore[attr-defined]
    page = client.get(f"/quarantine/{held.id}?done=released").text
    assert banner(page).startswith("Released: nothing was done with it")
    assert "it was released" in page and "/release" not in page
    assert item(web, held.id or 0).status == "released"
    [record] = audit_of(web, "quarantine.release")
    assert (record.actor, record.channel) == (SUPPORT, "web")
    assert record.detail == f"quarantined message {held.id} (unknown_sender) released"

    for action in ("release", "retry", "accept"):
        twice = post(client, csrf, f"/quarantine/{held.id}/{action}")
        assert twice.status_code == 400, action  # type: ignore[attr-defined]
        assert "was already released" in error_summary(twice.text)  # type: ignore[attr-defined]
    assert len(audit_of(web, "quarantine.release")) == 1
    # The message stays handled: a second copy in the mailbox changes nothing.
    assert web.council.deliver(raw, at=FIXED_NOW).quarantined == 0
    assert web.council.count(QuarantineItem) == 1


def test_an_action_without_the_forms_token_does_nothing(web: Web) -> None:
    held = quarantine_one(web, stranger_mail())
    client, _ = web.signed_in("coordinator")
    refused = client.post(f"/quarantine/{held.id}/release", data={"csrf": "forged"})
    assert refused.status_code == 400
    assert item(web, held.id or 0).status == "waiting"
