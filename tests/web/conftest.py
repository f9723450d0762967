"""The console on each database, driven by FastAPI's test client, with a clock the test
moves (sessions and links expire by it)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mailbridge.config import Config
from mailbridge.signin import sessions
from mailbridge.store.db import transaction
from mailbridge.store.models import OutboxMessage, Person
from mailbridge.web.app import create_app
from mailbridge.web.routing import CSRF_COOKIE, SESSION_COOKIE
from tests.factories import add_person
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import JANE, PRIYA, REF, SUPPORT, TOM, Council, build_council

# Who the tests sign in as: the directory's coordinator, officer, member and delegate, and
# an officer imported with the coordinator flag.
ROLES = ("coordinator", "officer", "member", "delegate", "officer_coordinator")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Web:
    app: Any
    engine: Engine
    config: Config
    clock: Clock
    people: dict[str, int]
    council: Council
    clients: list[TestClient] = field(default_factory=list)
    _pothole: list[str] = field(default_factory=list)

    def pothole(self) -> str:
        """Jane's pothole enquiry opened (once) by a real pass of the daemon: its reference."""
        if not self._pothole:
            self.council.open_pothole_case()
            self._pothole.append(REF)
        return self._pothole[0]

    def client(self) -> TestClient:
        client = TestClient(self.app, base_url="http://127.0.0.1:8080", follow_redirects=False)
        self.clients.append(client)
        return client

    def anonymous(self) -> tuple[TestClient, str]:
        """A client that has loaded the sign-in page, and its pre-sign-in CSRF token."""
        client = self.client()
        client.get("/sign-in")
        return client, client.cookies[CSRF_COOKIE]

    def signed_in(self, who: str, *, keep: bool = False) -> tuple[TestClient, str]:
        """A client signed in as `who` (a key of ROLES), and its session's CSRF token."""
        client = self.client()
        with transaction(self.engine) as session:
            person = session.get(Person, self.people[who])
            assert person is not None
            started = sessions.start(
                session,
                person,
                self.config.web,
                method="link",
                client="testclient",
                keep=keep,
                now=self.clock(),
            )
            token = started.token
        client.cookies.set(SESSION_COOKIE, token)
        with Session(self.engine) as session:
            row = sessions.live(session, token, self.clock())
            assert row is not None
            return client, row.csrf

    def outbox(self, kind: str | None = None) -> list[OutboxMessage]:
        with Session(self.engine) as session:
            query = select(OutboxMessage).order_by(col(OutboxMessage.id))
            if kind:
                query = query.where(OutboxMessage.kind == kind)
            return list(session.exec(query))


def make_web(tmp_path: Path, engine: Engine, **sections: Any) -> Web:
    """The console over a council on the embedded default (tests/helpers/council.py), whose
    passes make real cases from real email."""
    council = build_council(tmp_path, engine, **sections)
    config = council.services.config
    people = {
        "coordinator": council.person_id(SUPPORT),
        "officer": council.person_id(PRIYA),
        "member": council.person_id(JANE),
        "delegate": council.person_id(TOM),
        "officer_coordinator": add_person(
            engine, "officer", "Sam Lee", "sam.lee@example.gov.uk", coordinator=True
        ),
    }
    clock = Clock(FIXED_NOW)
    app = create_app(config, engine, clock=clock)
    return Web(app, engine, config, clock, people, council)


@pytest.fixture
def web(tmp_path: Path, migrated_db_url: str) -> Iterator[Web]:
    from mailbridge.store.db import make_engine

    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine)
    yield site
    for client in site.clients:
        client.close()
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """The console served by a real uvicorn on loopback, for a browser; its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
