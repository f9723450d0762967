"""What a person does in a shared IMAP mailbox while mailbridge works on it (Outlook, or
any other mail client, on a connection of its own): delete a message, file it in a folder
of their own, or drag one back into the inbox."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.servers.dovecot import DovecotServer

THEIR_FOLDER = "Person"


def delete(client: IMAPClient, uid: int) -> None:
    """Delete the message as Outlook does over IMAP: \\Deleted, then EXPUNGE."""
    client.delete_messages([uid])
    client.expunge()


def take_to_their_folder(client: IMAPClient, uid: int) -> None:
    """File the message in a folder of their own (as a second daemon's move looks too)."""
    if not client.folder_exists(THEIR_FOLDER):
        client.create_folder(THEIR_FOLDER)
    client.move([uid], THEIR_FOLDER)


def move_back(server: DovecotServer, folder: str) -> None:
    """Drag every message of `folder` back into the inbox."""
    with server.client() as client:
        client.select_folder(folder)
        client.move(client.search("ALL"), "INBOX")


@dataclass
class BusyPerson:
    """A person working through the inbox in a thread of their own, at random moments:
    now and then a message, mostly among the oldest (those mailbridge is working on), else
    any waiting one, is deleted or filed away. `done` counts what they tried; whether
    mailbridge had moved it first is for the mailbox to tell afterwards."""

    server: DovecotServer
    seed: int
    most: int = 60  # messages they try to take
    oldest: int = 40  # they pick among this many of the oldest waiting
    done: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _work(self) -> None:
        rng = random.Random(self.seed)
        with self.server.client() as client:
            client.select_folder("INBOX")
            while self.done < self.most and not self._stop.is_set():
                waiting = sorted(client.search("ALL"))
                if rng.random() < 0.7:  # mostly what mailbridge is at, sometimes any
                    waiting = waiting[: self.oldest]
                if waiting:
                    uid = rng.choice(waiting)
                    act = delete if rng.random() < 0.5 else take_to_their_folder
                    try:
                        act(client, uid)
                    except IMAPClientError as exc:  # mailbridge moved it first: a miss
                        self.errors.append(str(exc))
                    self.done += 1
                self._stop.wait(rng.uniform(0.0, 0.03))
