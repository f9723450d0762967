"""IMAP source: one synchronous imapclient connection, owned by this object.

imapclient does not recover dropped connections, and IDLE can hang silently (Office 365),
so this module keeps the connection alive itself: IDLE is renewed on a watchdog period,
and any socket or protocol abort leads to a reconnect with backoff. Mail only leaves the
inbox through `move`, which the caller invokes after its transaction committed. The folder
is shared (a person in Outlook, a second daemon): mail another client took meanwhile is
named by `move`, never an error.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailbridge.errors import LoginRefused, TransportError, Unreachable
from mailbridge.mailbox.base import (
    MAX_BATCH_BYTES,
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    Destination,
    InboundMail,
    StateStore,
    batch_sizes,
    by_bytes,
)
from mailbridge.probe import Probe, loopback, plural

log = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "plain"]
T = TypeVar("T")

# A dropped or broken connection; NO/BAD answers (IMAPClientError) are not in here.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, imaplib.IMAP4.abort, EOFError)
_NEW_MAIL = (b"EXISTS", b"RECENT")
_POLL_SECONDS = 5.0
_FETCH_ITEMS = ["BODY.PEEK[]", "INTERNALDATE"]  # PEEK: never sets \\Seen
_SIZE_ITEMS = ["RFC822.SIZE"]
# Of a message over the size limit, its header alone (at most MAX_HEADER_BYTES of it).
_HEADER_ITEMS = [f"BODY.PEEK[HEADER]<0.{MAX_HEADER_BYTES}>", "INTERNALDATE"]
_MAX_BACKOFF = 60.0


def _server_words(exc: BaseException) -> str:
    """imapclient wraps server text as "b'...'"; give a person the words alone."""
    text = str(exc)
    text = re.sub(r"b'(.*?)'", r"\1", text)
    text = re.sub(r'b"(.*?)"', r"\1", text)
    text = text.replace("[AUTHENTICATIONFAILED]", "").strip()
    return " ".join(text.split()).rstrip(".") or exc.__class__.__name__


def _utc_naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


class ImapSource:
    """An IMAP folder as a mailbox source, with a UID mark kept in a StateStore."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "ssl",
        username: str,
        password: str | None = None,
        token_provider: Callable[[], str] | None = None,
        folder: str = "INBOX",
        processed_folder: str = "Processed",
        quarantine_folder: str = "Quarantine",
        batch_size: int = 200,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        state: StateStore,
        idle: bool = True,
        idle_renew_seconds: float = 540.0,
        timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        reconnect_attempts: int = 6,
        name: str | None = None,
    ) -> None:
        if password is None and token_provider is None:
            raise ValueError("ImapSource needs a password or a token_provider")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self._token_provider = token_provider
        self.folder = folder
        self.folders = {
            Destination.PROCESSED: processed_folder,
            Destination.QUARANTINE: quarantine_folder,
        }
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.max_batch_bytes = max_batch_bytes
        self.state = state
        self.idle = idle
        self.idle_renew_seconds = min(max(idle_renew_seconds, 1.0), 600.0)
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.reconnect_attempts = max(1, reconnect_attempts)
        self.name = name or f"imap://{username}@{host}:{port}/{folder}"
        self._client: IMAPClient | None = None
        self._uidvalidity: int | None = None  # of the folder as currently selected
        # Set when the server announced EXISTS after our last SEARCH: mail `fetch` has not
        # seen. Dovecot sends it at the end of whatever command ran, so it is caught there.
        self._maybe_new = False
        self._known_folders: set[str] = set()
        self._idling = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connection -----------------------------------------------------------------

    def open(self) -> None:
        """Connect, log in and select the folder; TransportError says what to fix."""
        if self._client is None:
            self._connect()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._idling:
                client.idle_done()
            client.logout()
        except Exception:  # noqa: BLE001 - closing a connection that may already be gone
            self._shutdown(client)
        finally:
            self._idling = False

    @staticmethod
    def _shutdown(client: IMAPClient) -> None:
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001 - the socket is already unusable
            log.debug("IMAP socket already closed")

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._idling = False
        if client is not None:
            self._shutdown(client)

    def _connect(self) -> IMAPClient:
        where = self.where
        try:
            client = IMAPClient(
                self.host,
                self.port,
                ssl=self.security == "ssl",
                ssl_context=self.ssl_context,
                timeout=self.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"IMAP server {where} presented a certificate we do not trust "
                f"({exc.verify_message}). Check [mailbox] url and tls_ca_file"
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise Unreachable(
                f"cannot connect to IMAP server {where}: {_server_words(exc)}. "
                "Check [mailbox] url and that the server is running"
            ) from exc
        try:
            self._login(client)
            info = client.select_folder(self.folder)
        except TransportError:
            self._shutdown(client)
            raise
        except LoginError as exc:
            self._shutdown(client)
            raise LoginRefused(
                f"IMAP login to {where} as {self.username} failed: {_server_words(exc)}. "
                "Check [mailbox] username and password_env"
                + (" (or the [mailbox.oauth] settings)" if self._token_provider else "")
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            self._shutdown(client)
            raise TransportError(
                f"IMAP server {where} presented a certificate we do not trust "
                f"({exc.verify_message}). Check [mailbox] url and tls_ca_file"
            ) from exc
        except _CONNECTION_ERRORS as exc:
            self._shutdown(client)
            raise Unreachable(
                f"IMAP server {where} dropped the connection while logging in: {_server_words(exc)}"
            ) from exc
        except IMAPClientError as exc:
            self._shutdown(client)
            raise TransportError(
                f"IMAP server {where} refused to open folder {self.folder!r} for "
                f"{self.username}: {_server_words(exc)}. Check [mailbox] folder"
            ) from exc
        client.normalise_times = False  # keep INTERNALDATE's zone; we convert to UTC
        self._client = client
        self._known_folders = set()
        self._uidvalidity = int(info[b"UIDVALIDITY"])
        self._maybe_new = True  # new connection: we cannot know what arrived meanwhile
        return client

    def _login(self, client: IMAPClient) -> None:
        if self.security == "starttls":
            client.starttls(self.ssl_context or ssl.create_default_context())
        if self._token_provider is not None:
            client.oauth2_login(self.username, self._token_provider())
        else:
            client.login(self.username, self._password or "")

    def _reconnect(self, attempts: int) -> IMAPClient:
        """Drop the connection and make a new one: immediately, then after 1, 2, 4 … s."""
        had_connection = self._client is not None
        self._drop()
        delay = 1.0
        for attempt in range(1, attempts + 1):
            try:
                client = self._connect()
            except Unreachable as exc:
                if attempt == attempts:
                    tries = f"{attempts} attempt" + ("s" if attempts > 1 else "")
                    raise Unreachable(f"{exc} (gave up after {tries})") from exc
                log.warning(
                    "IMAP reconnect failed, retrying",
                    extra={"server": self.where, "attempt": attempt, "delay": delay},
                )
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
            else:
                if had_connection or attempt > 1:
                    log.info("IMAP reconnected", extra={"server": self.where})
                return client
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, op: Callable[[IMAPClient], T], attempts: int = 1) -> T:
        """Run one IMAP exchange; on a dropped connection reconnect and run it once more."""
        client = self._client or self._reconnect(attempts)
        try:
            result = op(client)
            self._note_exists(client)
            return result
        except _CONNECTION_ERRORS as exc:
            log.warning(
                "IMAP connection lost, reconnecting",
                extra={"server": self.where, "error": _server_words(exc)},
            )
            client = self._reconnect(attempts)
            try:
                result = op(client)
                self._note_exists(client)
                return result
            except _CONNECTION_ERRORS as again:
                self._drop()
                raise Unreachable(
                    f"IMAP server {self.where} dropped the connection again: {_server_words(again)}"
                ) from again
        except IMAPClientError as exc:
            # A refusal the server may lift (a folder locked, over quota, Exchange's "not
            # connected"): the service waits it out as an outage, the mail stays put.
            raise Unreachable(
                f"IMAP server {self.where} refused a command: {_server_words(exc)}"
            ) from exc

    # -- fetch ----------------------------------------------------------------------

    def fetch(self, full_scan: bool = False) -> Iterator[list[InboundMail]]:
        """Yield waiting messages by UID, without setting \\Seen (BODY.PEEK)."""

        def select(client: IMAPClient) -> int:
            info = client.select_folder(self.folder)
            _take_exists(client)  # the folder's size, not an arrival: the SEARCH covers it
            self._uidvalidity = int(info[b"UIDVALIDITY"])
            return self._uidvalidity

        uidvalidity = self._call(select)
        self._maybe_new = False
        stored_validity, last_uid = self.state.load(self.name)
        if stored_validity != uidvalidity:
            if stored_validity is not None:
                log.warning(
                    "IMAP UIDVALIDITY changed: scanning the whole folder",
                    extra={"source": self.name, "old": stored_validity, "new": uidvalidity},
                )
            self.state.save(self.name, uidvalidity, 0)
            full_scan, last_uid = True, 0

        def search(client: IMAPClient) -> list[int]:
            if full_scan:
                return list(client.search("ALL"))
            # "N:*" always matches the highest UID, even one at or below N: filter it.
            return [u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]

        uids = sorted(self._call(search))
        start = 0
        for size in batch_sizes(len(uids), self.batch_size):
            chunk = uids[start : start + size]
            start += size
            # Sizes first (RFC822.SIZE), so no message over the limit is ever fetched whole
            # and no batch holds more than max_batch_bytes.
            sizes = self._call(lambda c, chunk=chunk: c.fetch(chunk, _SIZE_ITEMS))
            known = [(uid, int(sizes[uid][b"RFC822.SIZE"])) for uid in chunk if uid in sizes]
            self._gone_before_fetch([uid for uid in chunk if uid not in sizes])
            for run in by_bytes(known, self._cost, self.max_batch_bytes):
                batch = self._fetch_run(run)
                if self._uidvalidity != uidvalidity:
                    log.warning(
                        "IMAP UIDVALIDITY changed during fetch", extra={"source": self.name}
                    )
                    return
                if batch:
                    yield batch

    def _cost(self, message: tuple[int, int]) -> int:
        return message[1] if message[1] <= self.max_message_bytes else 0

    def _fetch_run(self, run: list[tuple[int, int]]) -> list[InboundMail]:
        """A batch's messages in UID order: whole, or the header alone of one over the limit."""
        whole = [uid for uid, size in run if size <= self.max_message_bytes]
        over = {uid: size for uid, size in run if size > self.max_message_bytes}
        data = self._call(lambda c: c.fetch(whole, _FETCH_ITEMS)) if whole else {}
        heads = self._call(lambda c: c.fetch(sorted(over), _HEADER_ITEMS)) if over else {}
        batch = []
        gone = []
        for uid, _size in run:
            got = heads.get(uid, {}) if uid in over else data.get(uid, {})
            raw = got.get(b"BODY[HEADER]<0>" if uid in over else b"BODY[]")
            if raw is None:
                gone.append(uid)
                continue
            batch.append(
                InboundMail(
                    key=str(uid),
                    raw=bytes(raw),
                    received_at=_utc_naive(got.get(b"INTERNALDATE")),
                    oversize=over.get(uid),
                )
            )
        self._gone_before_fetch(gone)
        return batch

    def _gone_before_fetch(self, uids: list[int]) -> None:
        """Another client moved or deleted them after our SEARCH: nothing to do but say so."""
        for uid in uids:
            log.info("message gone before it was fetched", extra={"source": self.name, "uid": uid})

    # -- a look, for `mailbridge check` ------------------------------------------------

    def probe(self) -> Probe:
        """Log in, count what waits and see what the server can do; creates no folder."""
        self.open()

        def look(client: IMAPClient) -> tuple[int, list[str]]:
            waiting = len(client.search("ALL"))
            missing = [f for f in self.folders.values() if not client.folder_exists(f)]
            return waiting, missing

        waiting, missing = self._call(look)
        client = self._client
        assert client is not None
        login = "XOAUTH2" if self._token_provider is not None else "password"
        channel = {"ssl": "TLS", "starttls": "STARTTLS", "plain": "no encryption"}[self.security]
        found = [
            f"logged in as {self.username} ({login}, {channel})",
            f"{self.folder} holds {plural(waiting, 'message')}",
        ]
        if not self.idle:
            found.append("polls ([mailbox] idle = false)")
        elif client.has_capability("IDLE"):
            found.append("IDLE")
        else:
            found.append("no IDLE on this server, so it polls")
        if not client.has_capability("MOVE"):
            found.append("no MOVE, so COPY and EXPUNGE")
        folders = " and ".join(self.folders.values())
        if missing:
            found.append(f"{' and '.join(missing)} created at the first move")
        else:
            found.append(f"folders {folders} present")
        warnings = []
        if self.security == "plain" and self._token_provider is None and not loopback(self.host):
            warnings.append(
                "the password crosses the network unencrypted: use imaps:// or imap+starttls://"
            )
        return Probe("; ".join(found), tuple(warnings))

    # -- move -----------------------------------------------------------------------

    def move(self, keys: Sequence[str], destination: Destination) -> list[str]:
        """Move the batch in one command, then advance the saved UID mark past it; returns
        the UIDs that were no longer in the folder (another client moved or deleted them)."""
        uids = sorted({int(k) for k in keys})
        if not uids:
            return []
        folder = self.folders[destination]
        validity = self._uidvalidity

        # Run again after a reconnect, a MOVE the server carried out just before the
        # connection dropped names its messages as gone: they are in the folder all the same.
        def run(client: IMAPClient) -> list[int]:
            if self._uidvalidity != validity:
                return []
            self._ensure_folder(client, folder)
            try:
                moved = self._move_present(client, uids, folder)
            except IMAPClientError as exc:
                if "TRYCREATE" not in str(exc):
                    raise
                # A person deleted or renamed the folder since we made sure of it.
                self._known_folders.discard(folder)
                self._ensure_folder(client, folder)
                moved = self._move_present(client, uids, folder)
            return sorted(set(uids) - set(moved))

        gone = self._call(run)
        if self._uidvalidity != validity:
            # These UIDs name other messages now; the next full scan finds them again.
            log.warning("IMAP UIDVALIDITY changed: move skipped", extra={"source": self.name})
            return []
        # Past the vanished UIDs too: a UID is never given to another message in the folder.
        stored_validity, last_uid = self.state.load(self.name)
        if stored_validity == validity:
            self.state.save(self.name, validity, max(last_uid, uids[-1]))
        return [str(uid) for uid in gone]

    def _move_present(self, client: IMAPClient, uids: list[int], folder: str) -> list[int]:
        if client.has_capability("MOVE"):
            return _still_there(client, uids, lambda some: client.move(some, folder))
        return self._copy_and_expunge(client, uids, folder)

    def _ensure_folder(self, client: IMAPClient, folder: str) -> None:
        if folder in self._known_folders:
            return
        if not client.folder_exists(folder):
            try:
                client.create_folder(folder)
            except IMAPClientError:
                if not client.folder_exists(folder):  # else another process made it first
                    raise
            try:
                client.subscribe_folder(folder)
            except IMAPClientError as exc:
                log.info("IMAP subscribe failed", extra={"folder": folder, "error": str(exc)})
        self._known_folders.add(folder)

    @staticmethod
    def _copy_and_expunge(client: IMAPClient, uids: list[int], folder: str) -> list[int]:
        """Servers without MOVE: COPY, flag \\Deleted, expunge only these UIDs if we can;
        returns the UIDs copied (the others were gone)."""
        copied = _still_there(client, uids, lambda some: client.copy(some, folder))
        flagged = _still_there(
            client, copied, lambda some: client.delete_messages(some, silent=True)
        )
        if flagged and client.has_capability("UIDPLUS"):
            client.uid_expunge(flagged)
        elif flagged:
            client.expunge()
        return copied

    # -- wait -----------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Block until new mail arrives (IDLE, renewed on a watchdog) or timeout."""
        deadline = time.monotonic() + timeout
        attempts = self.reconnect_attempts
        try:
            self._call(lambda c: c.noop(), attempts)
            if self._take_maybe_new():
                return True
            client = self._client or self._reconnect(attempts)
            if self.idle and client.has_capability("IDLE"):
                return self._idle_until(client, deadline)
            while (remaining := deadline - time.monotonic()) > 0:
                time.sleep(min(_POLL_SECONDS, remaining))
                self._call(lambda c: c.noop(), attempts)
                if self._take_maybe_new():
                    return True
            return False
        except (*_CONNECTION_ERRORS, IMAPClientError) as exc:
            log.warning(
                "IMAP connection lost while waiting, reconnecting",
                extra={"server": self.where, "error": _server_words(exc)},
            )
            self._reconnect(attempts)
            self._take_maybe_new()
            return True  # something may have arrived while we were away: look

    def _note_exists(self, client: IMAPClient) -> None:
        if _take_exists(client):
            self._maybe_new = True

    def _take_maybe_new(self) -> bool:
        maybe, self._maybe_new = self._maybe_new, False
        return maybe

    def _idle_until(self, client: IMAPClient, deadline: float) -> bool:
        while (remaining := deadline - time.monotonic()) > 0:
            window = min(remaining, self.idle_renew_seconds)
            client.idle()
            self._idling = True
            try:
                responses = list(client.idle_check(timeout=window))
            except BaseException:
                # A signal (stop request) or a broken socket: leave IDLE if we still can.
                try:
                    client.idle_done()
                    self._idling = False
                except Exception:  # noqa: BLE001 - the connection is gone; drop it
                    self._drop()
                raise
            _text, more = client.idle_done()
            self._idling = False
            responses.extend(more)
            client.noop()  # also proves the connection still answers (IDLE can hang)
            self._note_exists(client)
            if any(len(r) > 1 and r[1] in _NEW_MAIL for r in responses):
                self._maybe_new = True
            if self._take_maybe_new():
                return True
            # Only a keep-alive or nothing: IDLE is re-issued, which is our watchdog.
        return False


# How a server says a message in the command was expunged by another client (RFC 5530's
# EXPUNGEISSUED; Dovecot's text "Some of the requested messages no longer exist").
_GONE = re.compile(r"EXPUNGEISSUED|no longer exist", re.IGNORECASE)


def _still_there(
    client: IMAPClient, uids: list[int], command: Callable[[list[int]], object]
) -> list[int]:
    """Run `command` on those of `uids` still in the selected folder; returns them.

    Another client may expunge a message at any moment. UID SEARCH first names the ones
    still here; one expunged after it makes the server refuse the whole command
    (EXPUNGEISSUED): NOOP takes the server's news of it, and the command goes again on
    those left. Each round has one message fewer, so it ends."""
    present = _present(client, uids)
    while present:
        try:
            command(present)
            return present
        except IMAPClientError as exc:
            if isinstance(exc, _CONNECTION_ERRORS) or not _GONE.search(str(exc)):
                raise
            client.noop()
            left = _present(client, present)
            if len(left) == len(present):
                raise  # it says a message is gone, yet every one is still here
            present = left
    return present


def _present(client: IMAPClient, uids: list[int]) -> list[int]:
    if not uids:
        return []
    found = set(client.search(["UID", ",".join(map(str, uids))]))
    return [uid for uid in uids if uid in found]


def _take_exists(client: IMAPClient) -> bool:
    """Pop the EXISTS answers imaplib collected from the untagged responses of past commands."""
    return bool(client._imap.untagged_responses.pop("EXISTS", None))
