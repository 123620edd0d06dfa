"""File-level helpers of the flat-file store: the OS write seam, atomic replace, the lock."""

from __future__ import annotations

import errno
import fcntl
import os
from typing import TYPE_CHECKING

from meshnode.errors import StoreError, StoreFull, StoreLocked

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = ["FileIo", "fsync_dir", "lock_store", "store_error", "write_all", "write_file"]


class FileIo:
    """The OS calls that put bytes on disk; tests swap in one that fails."""

    def write(self, fd: int, data: bytes) -> int:
        """Write some of ``data``; returns how much."""
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        """Make a file (or directory) durable."""
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        """Cut a file back to ``size`` bytes."""
        os.ftruncate(fd, size)


def write_all(io: FileIo, fd: int, data: bytes) -> None:
    """Write all of ``data`` (a write may take only part of it)."""
    done = 0
    while done < len(data):
        n = io.write(fd, data[done:] if done else data)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        done += n


def fsync_dir(io: FileIo, path: Path) -> None:
    """Make renames and new files in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        io.fsync(fd)
    finally:
        os.close(fd)


def write_file(io: FileIo, path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` atomically and durably: tmp file, fsync, rename, fsync of the dir."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in chunks:
                write_all(io, fd, chunk)
            io.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        fsync_dir(io, path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise store_error(f"cannot write {path}", exc) from exc


def store_error(what: str, exc: OSError) -> StoreError:
    """StoreFull for a full disk or quota, StoreError for anything else."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"{what}: disk full ({exc.strerror}); nothing stored was lost")
    return StoreError(f"{what}: {exc}")


def lock_store(path: Path) -> int:
    """Take the writer lock of the store at ``path``; StoreLocked if another process has it."""
    lock = path / "LOCK"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise store_error(f"cannot open {lock}", exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if isinstance(exc, BlockingIOError):
            raise StoreLocked(
                f"store {path} is in use by another meshnode process (pid {pid}); "
                "stop it first: one process at a time may use a store"
            ) from None
        raise StoreError(f"cannot lock {lock}: {exc}") from exc
    # The pid is only for the message above; the flock is what excludes.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
