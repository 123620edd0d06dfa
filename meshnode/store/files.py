"""File-level helpers: the OS write seam, atomic replace (the store's and the host's), the lock."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from typing import TYPE_CHECKING

from meshnode.errors import StoreError, StoreFull, StoreLocked

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = [
    "FileIo",
    "create_temporary",
    "fsync_dir",
    "lock_store",
    "store_error",
    "write_all",
    "write_atomically",
]

# What fsync(2) of a directory gives where the filesystem cannot sync one (some FUSE and
# network filesystems); a failed writeback is EIO, ENOSPC or EDQUOT, never these.
_DIR_SYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


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


_OS = FileIo()

# Exclusive, never through a symlink, not inherited by a child process.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY_NAME_BYTES = 8  # 64 random bits: a name nobody can plant in advance
_TEMPORARY_TRIES = 4  # each a fresh random name; failing all of them is not chance


def write_all(io: FileIo, fd: int, data: bytes) -> None:
    """Write all of ``data`` (a write may take only part of it)."""
    done = 0
    while done < len(data):
        n = io.write(fd, data[done:] if done else data)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        done += n


def fsync_dir(path: Path, *, io: FileIo = _OS) -> None:
    """Make renames and new files in directory ``path`` durable.

    A filesystem that cannot sync a directory (EINVAL, ENOTSUP: some FUSE and network
    filesystems) is left as it is; any other failure raises OSError.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        io.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_SYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def write_atomically(
    path: Path, data: bytes | Iterable[bytes], *, io: FileIo = _OS, mode: int = 0o644
) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks of it) so that it is never half written.

    The bytes go to a new temporary file in the same directory (create_temporary: a name
    nobody can guess, created exclusively with ``mode`` and never through a link), which
    is fsynced and renamed over ``path``; then the directory is fsynced (see fsync_dir);
    both fsyncs go through ``io``. Once it returns, ``path`` holds ``data`` and survives a
    power cut. If it raises OSError, the temporary file is gone and ``path`` holds its old
    bytes, or the new ones when only the directory fsync failed. Concurrent writers never
    share a temporary file; the last rename wins.
    """
    fd, tmp = create_temporary(path, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in [data] if isinstance(data, bytes) else data:
                f.write(chunk)
            f.flush()
            io.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent, io=io)


def create_temporary(path: Path, mode: int) -> tuple[int, Path]:
    """A new file beside ``path`` (``.NAME.<random>.tmp``) open for writing, and its path.

    Created with O_EXCL and O_NOFOLLOW and its final ``mode`` (less the umask) in one
    call: a file or link planted under any name is never opened, followed or chmodded.
    """
    for _ in range(_TEMPORARY_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(_TEMPORARY_NAME_BYTES)}.tmp")
        try:
            return os.open(tmp, _CREATE_FLAGS, mode), tmp
        except FileExistsError:
            continue  # a collision of random names: someone is planting files here
    raise OSError(errno.EEXIST, "no free temporary name (files planted?)", str(path.parent))


def store_error(what: str, exc: OSError) -> StoreError:
    """StoreFull for a full disk or quota, StoreError for anything else."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"{what}: disk full ({exc.strerror}); nothing stored was lost")
    return StoreError(f"{what}: {exc}")


def lock_store(path: Path) -> int:
    """Take the writer lock of the store at ``path``; StoreLocked if another process has it."""
    lock = path / "LOCK"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
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
