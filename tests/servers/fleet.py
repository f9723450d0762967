"""Several `mailbridge run` on one mailbox, as an operator runs them for availability: each
in a session of its own (so killing one kills its courier and parse workers too, as a power
cut of its node would), each log read as it comes. Used by the standby tests and by
bench/survive.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailbridge.config import load_config
from mailbridge.service.lease import lease_holder
from tests.helpers.clock import python_command
from tests.servers.service import Lines

TAKEN_OVER = "took over the mailbox"


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    log: Lines

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Fleet:
    config: Path
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    def start(self, count: int = 1) -> list[Daemon]:
        started = []
        for _ in range(count):
            proc = subprocess.Popen(
                python_command("mailbridge", "run", "--config", str(self.config)),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            started.append(Daemon(proc, Lines(proc)))
        self.daemons += started
        return started

    def holder(self) -> Daemon | None:
        """The daemon holding the mailbox's lease now, as `mailbridge check` sees it."""
        found = lease_holder(load_config(self.config))
        if found is None:
            return None
        host, _, pid_text = found.name.rpartition(":")
        if not host or not pid_text.isdigit():
            return None  # a new holder is writing its name this instant (no "host:pid" yet)
        pid = int(pid_text)
        return next((d for d in self.daemons if d.pid == pid and d.alive), None)

    def wait_for_holder(self, seconds: float = 30) -> Daemon:
        deadline = time.monotonic() + seconds
        while (active := self.holder()) is None:
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.05)
        return active

    def standbys(self) -> list[Daemon]:
        active = self.holder()
        return [d for d in self.daemons if d.alive and d is not active]

    def kill(self, daemon: Daemon) -> None:
        """SIGKILL the daemon's whole process group: it, its courier, its parse workers."""
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.proc.wait()

    def takeover(self, killed: Daemon, seconds: float = 30) -> tuple[Daemon, float]:
        """Kill the active daemon; the standby that takes over, and how long it took (from
        the kill until another daemon holds the lease)."""
        self.kill(killed)
        started = time.monotonic()
        deadline = started + seconds
        while (active := self.holder()) is None or active is killed:
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.02)
        return active, time.monotonic() - started

    def stop(self, seconds: float = 30) -> list[int | None]:
        """SIGTERM the living daemons; their exit codes (None for those killed before)."""
        for daemon in self.daemons:
            if daemon.alive:
                daemon.proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for daemon in self.daemons:
            if daemon.proc.returncode is not None and daemon.proc.returncode < 0:
                codes.append(None)  # killed by the test
                continue
            try:
                codes.append(daemon.proc.wait(timeout=seconds))
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                codes.append(daemon.proc.wait())
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- daemon {d.pid}\n{d.log.text}" for d in self.daemons)
