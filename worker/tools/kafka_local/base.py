"""What every part of the launcher shares: its error, the secret-string type, small file helpers."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"


class KafkaLocalError(RuntimeError):
    """The local broker could not be prepared, started, reached or stopped."""


class RedactedStr(str):
    """A secret string whose ``repr`` hides it.

    kafka-python's ``KafkaAdminClient`` logs its whole configuration at DEBUG (``%s`` of a dict, so
    ``repr`` of each value); passwords handed out by this module are ``RedactedStr`` so that such
    log lines never carry them. The value itself (``str()``, ``.encode()``, f-strings) is unchanged.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock held for the block (serialises concurrent launchers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
