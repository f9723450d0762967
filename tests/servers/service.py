"""`mailbridge run` as a process under test: its log read as it comes, and a clean stop."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from tests.servers.relay import Relay


class Lines:
    """A process's standard error, read line by line as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, count: int = 1, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while sum(text in line for line in self.lines) < count:
            assert time.monotonic() < deadline, self.text
            time.sleep(0.05)


def terminate(proc: subprocess.Popen[str], *relays: Relay, seconds: float = 20) -> int:
    """SIGTERM the service and wait for its exit code; the relays close after, always."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=seconds)
    finally:
        for relay in relays:
            relay.stop()
