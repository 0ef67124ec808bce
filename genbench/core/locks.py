"""Claims: one process at a time works on a run (or a training), across processes and machines.

A claim is an exclusive ``flock`` on a lock file beside what it protects (a run record, a training folder).
The kernel drops the lock when its process ends, however it ends (exit, exception, SIGKILL), so a dead
process never leaves a stale claim behind; on a shared filesystem (NFS) Linux maps ``flock`` onto the
server's byte-range locks, so processes on different machines see each other's claims. The file holds the
holder's host and pid, to say who has it.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from pathlib import Path


class Claim:
    """An exclusive claim on ``path`` (a ``.lock`` file); a context manager that releases it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        """Take the claim; with ``wait`` block until its holder ends, else return False when it is held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            if self._still_linked(fd):  # a holder may have released (and unlinked) it between our open and lock
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": platform.node(), "pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        self.fd = fd
        return True

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees an unlinked file and retries
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self) -> str:
        """Who holds the claim, e.g. ``host:1234`` (empty when nobody does or it cannot be read)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return ""
        return f"{info['host']}:{info['pid']}" if "host" in info else ""

    def __enter__(self) -> "Claim":
        if self.fd is None:
            self.acquire(wait=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()
