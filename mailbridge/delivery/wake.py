"""Waking a courier from another process on this host: the web console queues a sign-in
link and rings, so the link leaves at once instead of at the courier's next look (every
IDLE_SECONDS). Each courier listens on a datagram socket of its own in data_dir/wake/;
ringing sends one byte to every socket there. Nothing waits and nothing fails: a socket
whose courier died is removed, and with no courier on this host the mail simply goes
with the next pass of `mailbridge run`, wherever it runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from mailbridge.config import Config
from mailbridge.files import private_folder

FOLDER = "wake"


def folder(config: Config) -> Path:
    return Path(config.storage.data_dir) / FOLDER


def listen(config: Config) -> socket.socket | None:
    """The courier's socket, bound at data_dir/wake/<pid>.sock (None if it cannot be)."""
    path = folder(config) / f"{os.getpid()}.sock"
    try:
        private_folder(path.parent)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead process's, whose pid we now have
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
    except OSError:
        return None
    sock.setblocking(False)
    return sock


def stop_listening(config: Config, sock: socket.socket | None) -> None:
    if sock is None:
        return
    sock.close()
    with contextlib.suppress(OSError):
        (folder(config) / f"{os.getpid()}.sock").unlink()


def ring_courier(config: Config) -> int:
    """Ring every courier on this host; how many answered the door."""
    rung = 0
    try:
        paths = list(folder(config).glob("*.sock"))
    except OSError:
        return 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in paths:
            try:
                sock.sendto(b"\0", str(path))
                rung += 1
            except BlockingIOError:
                rung += 1  # its queue is full of rings already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()  # nobody listens there any more
            except OSError:
                continue
    return rung
