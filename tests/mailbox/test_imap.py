"""ImapSource against a real Dovecot: fetch by UID, move after commit, IDLE, reconnect."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import Engine

from mailbridge.config import Config, MailboxConfig
from mailbridge.errors import LoginRefused, TransportError, Unreachable
from mailbridge.mailbox.base import Destination, InboundMail
from mailbridge.mailbox.factory import open_source
from mailbridge.mailbox.imap import ImapSource
from mailbridge.mailbox.maildir import MaildirSource
from mailbridge.mailbox.state import DbStateStore, MemoryStateStore
from tests.helpers.mail import large_attachment
from tests.helpers.person import delete, take_to_their_folder
from tests.servers.dovecot import NO_MOVE_HOST, NO_UIDPLUS_HOST, DovecotServer


def message(n: int) -> bytes:
    # CRLF, a non-ASCII 8-bit body and no trailing newline: bytes must come back exactly.
    return (
        f"From: Cllr Test <cllr{n}@council.example>\r\n"
        f"To: enquiries@council.example\r\n"
        f"Subject: Enquiry {n}\r\n"
        f"Message-ID: <m{n}@council.example>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"Pothole on Mill Lane, caf\u00e9 corner, number {n}."
    ).encode()


def make_source(server: DovecotServer, state: MemoryStateStore, **kw: object) -> ImapSource:
    options: dict = {"security": "plain", "timeout": 15, "reconnect_attempts": 2} | kw
    return ImapSource(
        server.host,
        server.port,
        username=server.user,
        password=server.password,
        state=state,
        **options,
    )


def fetch_all(source: ImapSource | MaildirSource, full_scan: bool = False) -> list[InboundMail]:
    return [mail for batch in source.fetch(full_scan=full_scan) for mail in batch]


def wait_until_idling(source: ImapSource) -> None:
    for _ in range(250):
        if source._idling:
            return
        time.sleep(0.02)
    raise AssertionError("the source never entered IDLE")


@pytest.fixture
def state() -> MemoryStateStore:
    return MemoryStateStore()


@pytest.fixture
def source(imap_mailbox: DovecotServer, state: MemoryStateStore) -> Iterator[ImapSource]:
    src = make_source(imap_mailbox, state, batch_size=2)
    src.open()
    yield src
    src.close()


def test_fetch_returns_exact_bytes_and_internaldate_without_marking_seen(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    when = datetime(2026, 3, 2, 9, 15, 0, tzinfo=timezone(timedelta(hours=-5)))
    uids = [imap_mailbox.append(message(n), msg_time=when + timedelta(minutes=n)) for n in range(3)]

    batches = list(source.fetch())

    assert [len(b) for b in batches] == [2, 1]  # batch_size=2
    mails = [m for b in batches for m in b]
    assert [m.key for m in mails] == [str(u) for u in uids]
    assert [m.raw for m in mails] == [message(n) for n in range(3)]
    assert [m.received_at for m in mails] == [
        datetime(2026, 3, 2, 14, 15 + n, 0)
        for n in range(3)  # naive UTC
    ]
    with imap_mailbox.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search("SEEN") == []


def test_a_backlog_is_fetched_in_short_batches_first(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    uids = [imap_mailbox.append(message(n)) for n in range(30)]
    src = make_source(imap_mailbox, state, batch_size=10)
    src.open()
    try:
        batches = list(src.fetch())
    finally:
        src.close()
    assert [len(b) for b in batches] == [2, 4, 10, 10, 4]  # mailbox.base.batch_sizes
    assert [m.key for b in batches for m in b] == [str(u) for u in uids]


def test_move_to_processed_and_quarantine_creates_folders_and_empties_inbox(
    imap_mailbox: DovecotServer, source: ImapSource, state: MemoryStateStore
) -> None:
    for n in range(3):
        imap_mailbox.append(message(n))
    mails = fetch_all(source)

    source.move([mails[0].key, mails[1].key], Destination.PROCESSED)
    source.move([mails[2].key], Destination.QUARANTINE)

    assert imap_mailbox.uids("INBOX") == []
    with imap_mailbox.client() as client:
        assert {"Processed", "Quarantine"} <= {f[2] for f in client.list_sub_folders()}
        client.select_folder("Processed", readonly=True)
        held = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
        assert sorted(v[b"BODY[]"] for v in held.values()) == [message(0), message(1)]
        client.select_folder("Quarantine", readonly=True)
        held = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
        assert [v[b"BODY[]"] for v in held.values()] == [message(2)]
    assert state.load(source.name)[1] == int(mails[2].key)


def test_moving_a_uid_already_gone_is_not_an_error(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    imap_mailbox.append(message(1))
    (mail,) = fetch_all(source)
    source.move([mail.key], Destination.PROCESSED)
    source.move([mail.key], Destination.PROCESSED)  # e.g. a second daemon moved it already
    assert imap_mailbox.uids("Processed") and imap_mailbox.uids("INBOX") == []


def test_a_processed_folder_a_person_deleted_is_made_again(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    first, second = imap_mailbox.append(message(1)), imap_mailbox.append(message(2))
    fetch_all(source)
    assert source.move([str(first)], Destination.PROCESSED) == []
    with imap_mailbox.client() as person:
        person.delete_folder("Processed")
    assert source.move([str(second)], Destination.PROCESSED) == []
    assert imap_mailbox.uids("INBOX") == []
    assert len(imap_mailbox.uids("Processed")) == 1  # the first went with the folder


def test_a_refusal_the_server_may_lift_is_an_outage_not_a_crash(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    """A NO the service cannot act on (here the watched folder removed under it) is waited
    out as an outage, with the server's words; the mail stays where it is."""
    imap_mailbox.append(message(1))
    fetch_all(source)
    with imap_mailbox.client() as person:
        person.create_folder("Elsewhere")
    source.folder = "Elsewhere"
    with imap_mailbox.client() as person:
        person.delete_folder("Elsewhere")
    with pytest.raises(Unreachable, match="refused a command"):
        fetch_all(source)


def after_our(source: ImapSource, command: str, change: Callable[[], None], nth: int = 1) -> None:
    """`change` happens once, right after the server answered the `nth` next `command`
    (an imapclient method) on the source's connection: the moment between two of its
    commands, where a person's action would fall in a real race."""
    client = source._client
    assert client is not None
    real = getattr(client, command)
    calls = [0]

    def answer_then_change(*args: object, **kwargs: object) -> object:
        answer = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == nth:
            change()
        return answer

    setattr(client, command, answer_then_change)


# Where the server offers MOVE, and where it does not (COPY, \\Deleted, then UID EXPUNGE
# with UIDPLUS, or EXPUNGE without it): the same Dovecot, seen at another address.
PATHS = {"MOVE": None, "COPY and UID EXPUNGE": NO_MOVE_HOST, "COPY and EXPUNGE": NO_UIDPLUS_HOST}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("meanwhile", [delete, take_to_their_folder])
@pytest.mark.parametrize(
    "when", ["before the move", "after our connection heard of it", "between SEARCH and MOVE"]
)
def test_move_returns_the_messages_another_client_took_and_moves_the_rest(
    imap_mailbox: DovecotServer,
    state: MemoryStateStore,
    path: str,
    meanwhile: Callable[[IMAPClient, int], None],
    when: str,
) -> None:
    """A shared mailbox: a person (or a second daemon) moves or deletes a message after
    we fetched it. Before our move, or once our connection has heard of it, the message is
    simply not there; between our SEARCH and our MOVE, Dovecot refuses the whole command
    (EXPUNGEISSUED). Either way the rest is moved and the gone one named."""
    server = replace(imap_mailbox, host=PATHS[path] or imap_mailbox.host)
    uids = [server.append(message(n)) for n in range(5)]
    handled, taken = uids[:4], uids[3]  # the last one waits on: it failed, say
    source = make_source(server, state)
    assert source.open() is None and source._client is not None
    assert source._client.has_capability("MOVE") == (path == "MOVE")
    fetch_all(source)
    with imap_mailbox.client() as person:  # a person whose server can MOVE
        person.select_folder("INBOX")
        if when == "between SEARCH and MOVE":
            after_our(source, "search", lambda: meanwhile(person, taken))
        else:
            meanwhile(person, taken)
        if when == "after our connection heard of it":
            source._call(lambda c: c.noop())

        gone = source.move([str(u) for u in handled], Destination.PROCESSED)

    assert gone == [str(taken)]
    assert server.uids("INBOX") == [uids[4]]  # only what it was given left the inbox
    with server.client() as client:
        client.select_folder("Processed", readonly=True)
        held = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
    assert sorted(v[b"BODY[]"] for v in held.values()) == [message(n) for n in (0, 1, 2)]
    assert state.load(source.name)[1] == taken  # the mark goes past the gone one too
    source.close()


@pytest.mark.parametrize(
    ("command", "nth"), [("copy", 1), ("search", 2)], ids=["after COPY", "after its SEARCH"]
)
def test_without_move_a_message_deleted_after_our_copy_is_moved_not_gone(
    imap_mailbox: DovecotServer, state: MemoryStateStore, command: str, nth: int
) -> None:
    """COPY done, then a person deletes the original before our STORE \\Deleted: the copy
    in Processed is the move."""
    server = replace(imap_mailbox, host=NO_MOVE_HOST)
    uids = [server.append(message(n)) for n in range(2)]
    source = make_source(server, state)
    fetch_all(source)
    with imap_mailbox.client() as person:  # a person whose server can MOVE
        person.select_folder("INBOX")
        after_our(source, command, lambda: delete(person, uids[0]), nth)

        gone = source.move([str(u) for u in uids], Destination.PROCESSED)

    assert gone == []
    assert server.uids("INBOX") == [] and len(server.uids("Processed")) == 2
    source.close()


def test_a_message_gone_between_search_and_fetch_is_skipped_and_logged(
    imap_mailbox: DovecotServer, source: ImapSource, caplog: pytest.LogCaptureFixture
) -> None:
    uids = [imap_mailbox.append(message(n)) for n in range(3)]
    with imap_mailbox.client() as person:
        person.select_folder("INBOX")
        after_our(source, "search", lambda: delete(person, uids[1]))
        with caplog.at_level(logging.INFO, logger="mailbridge.mailbox.imap"):
            assert [m.raw for m in fetch_all(source)] == [message(0), message(2)]
    (record,) = [r for r in caplog.records if r.getMessage().startswith("message gone")]
    assert record.getMessage() == "message gone before it was fetched"
    assert record.levelno == logging.INFO and record.uid == uids[1]  # type: ignore[attr-defined]


def test_incremental_fetch_returns_only_uids_above_the_mark_and_full_scan_all(
    imap_mailbox: DovecotServer, source: ImapSource, state: MemoryStateStore
) -> None:
    first, second, third = (imap_mailbox.append(message(n)) for n in range(3))
    fetch_all(source)
    source.move([str(second), str(third)], Destination.PROCESSED)  # `first` failed: stays
    assert [m.key for m in fetch_all(source)] == []  # "UID 4:*" still answers UID 3: filtered

    fourth = imap_mailbox.append(message(4))

    assert [m.key for m in fetch_all(source)] == [str(fourth)]
    assert [m.key for m in fetch_all(source, full_scan=True)] == [str(first), str(fourth)]


def test_changed_uidvalidity_forces_a_full_scan(
    imap_mailbox: DovecotServer, source: ImapSource, state: MemoryStateStore
) -> None:
    first, second = (imap_mailbox.append(message(n)) for n in range(2))
    fetch_all(source)
    source.move([str(second)], Destination.PROCESSED)
    real_validity, last = state.load(source.name)
    assert last == second
    state.save(source.name, 12345, last)  # as if the server had rebuilt the folder

    assert [m.key for m in fetch_all(source)] == [str(first)]
    assert state.load(source.name) == (real_validity, 0)


def test_implicit_tls_login_with_the_servers_certificate(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    imap_mailbox.append(message(1))
    source = make_source(
        imap_mailbox,
        state,
        security="ssl",
        ssl_context=imap_mailbox.ssl_context(),
    )
    source.port = imap_mailbox.tls_port
    source.open()
    try:
        assert source._client is not None and source._client.ssl
        assert [m.raw for m in fetch_all(source)] == [message(1)]
    finally:
        source.close()


def test_starttls_login_with_the_servers_certificate(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    imap_mailbox.append(message(1))
    source = make_source(
        imap_mailbox, state, security="starttls", ssl_context=imap_mailbox.ssl_context()
    )
    try:
        assert [m.raw for m in fetch_all(source)] == [message(1)]
        assert source._client is not None and source._client._starttls_done
    finally:
        source.close()


def test_untrusted_certificate_is_refused_with_a_clear_message(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    source = make_source(imap_mailbox, state, security="ssl")  # system CAs only
    source.port = imap_mailbox.tls_port
    with pytest.raises(TransportError, match=r"certificate we do not trust.*tls_ca_file"):
        source.open()


def test_xoauth2_login_uses_the_token_provider(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    # The test Dovecot checks an XOAUTH2 token like a password: proves the SASL exchange.
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return imap_mailbox.password

    source = ImapSource(
        imap_mailbox.host,
        imap_mailbox.port,
        security="plain",
        username=imap_mailbox.user,
        token_provider=token,
        state=state,
        timeout=15,
    )
    imap_mailbox.append(message(1))
    try:
        assert len(fetch_all(source)) == 1
        assert calls == [1]
    finally:
        source.close()


def test_wrong_password_gives_one_clear_line(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    source = ImapSource(
        imap_mailbox.host,
        imap_mailbox.port,
        security="plain",
        username=imap_mailbox.user,
        password="wrong",
        state=state,
        timeout=15,
    )
    with pytest.raises(LoginRefused) as caught:  # a person must act: the service waits
        source.open()
    text = str(caught.value)
    assert text.startswith(
        f"IMAP login to {imap_mailbox.host}:{imap_mailbox.port} as {imap_mailbox.user} failed: "
    )
    assert "Authentication failed. Check" in text
    assert text.endswith("Check [mailbox] username and password_env")
    assert "\n" not in text and "b'" not in text


def test_connection_refused_names_host_and_port(state: MemoryStateStore) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        source = ImapSource(
            "127.0.0.1", port, security="plain", username="x", password="y", state=state
        )
        with pytest.raises(TransportError, match=rf"127\.0\.0\.1:{port}.*refused"):
            source.open()


def test_idle_wakes_when_mail_arrives(imap_mailbox: DovecotServer, source: ImapSource) -> None:
    imap_mailbox.append(message(1))
    (old,) = fetch_all(source)
    source.move([old.key], Destination.PROCESSED)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(source.wait(10)))
    waiter.start()
    wait_until_idling(source)

    imap_mailbox.append(message(2))
    waiter.join(timeout=8)

    assert not waiter.is_alive() and woke == [True]
    assert [m.raw for m in fetch_all(source)] == [message(2)]


def test_wait_times_out_without_new_mail(imap_mailbox: DovecotServer, source: ImapSource) -> None:
    imap_mailbox.append(message(1))
    fetch_all(source)
    assert source.wait(0.5) is False
    assert source._idling is False


def test_wait_returns_at_once_for_mail_that_arrived_before_it(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    fetch_all(source)
    imap_mailbox.append(message(1))
    assert source.wait(30) is True


def test_without_idle_wait_polls_with_noop(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    source = make_source(imap_mailbox, state, idle=False)
    try:
        fetch_all(source)
        assert source.wait(0.3) is False
        imap_mailbox.append(message(1))
        assert source.wait(30) is True
        assert source._idling is False
    finally:
        source.close()


def test_fetch_and_move_survive_a_dropped_connection(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    imap_mailbox.append(message(1))
    assert source._client is not None
    source._client.socket().shutdown(socket.SHUT_RDWR)

    (mail,) = fetch_all(source)

    assert source._client is not None
    source._client.socket().shutdown(socket.SHUT_RDWR)
    source.move([mail.key], Destination.PROCESSED)
    assert imap_mailbox.uids("INBOX") == []


def test_wait_reconnects_after_the_server_kicks_us(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    fetch_all(source)
    before = source._client
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(source.wait(10)))
    waiter.start()
    wait_until_idling(source)
    imap_mailbox.kick()  # the server drops us (restart, failover)
    waiter.join(timeout=8)

    assert woke == [True]  # woken to look again, on a new connection
    assert source._client is not None and source._client is not before
    imap_mailbox.append(message(3))
    assert [m.raw for m in fetch_all(source)] == [message(3)]


def test_wait_gives_up_with_a_clear_message_when_the_server_stays_away(
    imap_mailbox: DovecotServer, source: ImapSource
) -> None:
    fetch_all(source)
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        source.port = dead.getsockname()[1]
        imap_mailbox.kick()
        with pytest.raises(TransportError, match=r"refused.*\(gave up after 2 attempts\)$"):
            source.wait(10)  # reconnect_attempts=2: one immediate try, one after 1 s


def test_factory_builds_an_imap_source_from_config(
    imap_mailbox: DovecotServer, state: MemoryStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MB_TEST_IMAP_PASSWORD", imap_mailbox.password)
    config = Config(
        mailbox=MailboxConfig(
            url=f"imaps://{imap_mailbox.user}@localhost:{imap_mailbox.tls_port}/",
            password_env="MB_TEST_IMAP_PASSWORD",
            tls_ca_file=imap_mailbox.cafile,
        )
    )
    source = open_source(config, state)
    assert isinstance(source, ImapSource)
    assert source.name == f"imaps://{imap_mailbox.user}@localhost:{imap_mailbox.tls_port}/INBOX"
    imap_mailbox.append(message(1))
    try:
        source.open()
        assert [m.raw for m in fetch_all(source)] == [message(1)]
    finally:
        source.close()


def test_factory_builds_a_maildir_source(tmp_path: Path, state: MemoryStateStore) -> None:
    config = Config(mailbox=MailboxConfig(url=f"maildir:{tmp_path / 'box'}", batch_size=7))
    source = open_source(config, state)
    assert isinstance(source, MaildirSource)
    assert (source.path, source.batch_size) == (tmp_path / "box", 7)


def test_db_state_store_keeps_the_mark(engine: Engine) -> None:
    store = DbStateStore(engine)
    assert store.load("imaps://a@h:993/INBOX") == (None, 0)
    store.save("imaps://a@h:993/INBOX", 17, 40)
    store.save("imaps://a@h:993/INBOX", 17, 42)
    store.save("imap://b@h:143/INBOX", None, 0)
    assert store.load("imaps://a@h:993/INBOX") == (17, 42)
    assert DbStateStore(engine).load("imap://b@h:143/INBOX") == (None, 0)


def test_sizes_come_first_and_a_message_over_the_limit_gives_its_header_alone(
    imap_mailbox: DovecotServer, state: MemoryStateStore
) -> None:
    """RFC822.SIZE is fetched before any body: of a message over max_message_bytes only
    BODY.PEEK[HEADER] is fetched; batches hold at most max_batch_bytes, a larger message
    comes alone, and nothing is marked seen."""
    sizes = [400_000, 400_000, 3_000_000, 1_500_000, 100_000]
    raws = [large_attachment(size, n) for n, size in enumerate(sizes)]
    uids = [imap_mailbox.append(raw) for raw in raws]
    src = make_source(
        imap_mailbox, state, batch_size=100, max_message_bytes=2_000_000, max_batch_bytes=1_000_000
    )
    src.open()
    try:
        batches = list(src.fetch())
    finally:
        src.close()
    assert [[int(m.key) for m in b] for b in batches] == [uids[0:3], uids[3:4], uids[4:5]]
    mails = [m for b in batches for m in b]
    big = raws[2]
    assert mails[2].raw == big[: big.index(b"\r\n\r\n") + 4]
    assert mails[2].oversize == len(big)
    assert [m.raw for m in mails if m.oversize is None] == [raws[0], raws[1], raws[3], raws[4]]
    with imap_mailbox.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search("SEEN") == []
