"""A drive's folders, touched only through directory fds: no link is ever followed.

What is on a drive is a stranger's: its ``meshnode/`` folder may hold symbolic links (to the
node's data dir, to ``/dev/zero``), FIFOs, sockets, devices or hard links where files should
be. So every name is taken relative to a directory fd opened with ``O_DIRECTORY|O_NOFOLLOW``
(the mount point is the one path trusted: the user or udev gave it); a file is opened with
``O_NOFOLLOW|O_NONBLOCK`` and ``fstat``-checked, and anything but a regular file (for a
cut, one with no other names) raises ``NotRegular``, for the caller to report and leave
alone. Reads are capped: at most ``limit + 1`` bytes are read, and more is ``TooBig``.
Writes go to an exclusive temporary name, are fsynced and renamed (as
store/files.write_atomically does), never over anything but a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import weakref
from typing import TYPE_CHECKING

from meshnode.errors import MeshnodeError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["Folder", "NotRegular", "TooBig", "kind_of"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK_BYTES = 1 << 20  # reads in steps of this: a capped read never asks for more than it keeps
# Temporary names tried before giving up: each one taken is something left on the drive.
_TMP_TRIES = 16
_DIR_SYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class NotRegular(MeshnodeError):
    """A name on the drive is not a plain file (or folder) of its own: left alone."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name}: {kind}, left alone")
        self.name = name
        self.kind = kind


class TooBig(MeshnodeError):
    """A file on the drive is larger than what may be read of it."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"{name}: larger than {limit} bytes")
        self.name = name
        self.limit = limit


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a file" if stat.S_ISREG(mode) else "not a file"


class Folder:
    """One directory on the drive, held open; every name in it is taken relative to it."""

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown  # for messages only: never opened by name
        self._closer = weakref.finalize(self, os.close, fd)

    @classmethod
    def open_at(cls, parent: Path | Folder, name: str) -> Folder:
        """Open folder ``name`` in ``parent`` (the trusted mount point, or a Folder).

        Raises:
            NotRegular: ``name`` is a link, a file or anything but a folder.
            OSError: it is missing, or the drive failed.
        """
        if isinstance(parent, Folder):
            shown, dir_fd, path = f"{parent.shown}/{name}", parent.fd, name
        else:
            shown, dir_fd, path = str(parent / name), None, str(parent / name)
        try:
            fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                mode = os.lstat(path, dir_fd=dir_fd).st_mode
                raise NotRegular(name, kind_of(mode)) from None
            raise
        return cls(fd, shown)

    def close(self) -> None:
        """Let go of the directory fd (also done when the Folder is collected)."""
        self._closer()

    def lstat(self, name: str) -> os.stat_result | None:
        """What ``name`` is, links not followed; None when there is nothing by that name."""
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def names(self, limit: int) -> tuple[list[tuple[str, bool]], bool]:
        """Up to ``limit`` (name, is a regular file) in this folder, and whether that was all."""
        out: list[tuple[str, bool]] = []
        with os.scandir(self.fd) as entries:
            for entry in entries:
                if len(out) >= limit:
                    return out, False
                out.append((entry.name, entry.is_file(follow_symlinks=False)))
        return out, True

    @contextlib.contextmanager
    def _open_file(self, name: str, flags: int) -> Iterator[tuple[int, os.stat_result]]:
        """An fd of regular file ``name`` and its fstat; NotRegular for anything else."""
        before = self.lstat(name)
        if before is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if not stat.S_ISREG(before.st_mode):  # never open a FIFO, socket or device at all
            raise NotRegular(name, kind_of(before.st_mode))
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a link since the lstat
                raise NotRegular(name, "a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegular(name, kind_of(st.st_mode))
            yield fd, st
        finally:
            os.close(fd)

    def read(self, name: str, limit: int) -> bytes:
        """All of regular file ``name``; TooBig past ``limit`` bytes (at most limit+1 read)."""
        with self._open_file(name, _READ_FLAGS) as (fd, st):
            if st.st_size > limit:  # a regular file's size: refused before a byte is read
                raise TooBig(name, limit)
            return _read_capped(fd, name, limit)  # and capped, should it grow meanwhile

    def read_head(self, name: str, size: int) -> bytes:
        """The first ``size`` bytes of regular file ``name`` (fewer if it is shorter)."""
        with self._open_file(name, _READ_FLAGS) as (fd, _):
            return _read_upto(fd, size)

    def truncate(self, name: str, size: int) -> None:
        """Cut regular file ``name`` to ``size`` bytes, unless it has other names too."""
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with self._open_file(name, flags) as (fd, st):
            if st.st_nlink != 1:  # a hard link: cutting it would cut a file elsewhere
                raise NotRegular(name, "a file with other names (hard links)")
            os.ftruncate(fd, size)
            os.fsync(fd)

    def unlink(self, name: str) -> bool:
        """Delete regular file ``name``; False (and nothing done) when it is anything else."""
        st = self.lstat(name)
        if st is None or not stat.S_ISREG(st.st_mode):
            return False
        os.unlink(name, dir_fd=self.fd)  # unlink never follows a link, even one swapped in
        return True

    def mkdir(self, name: str) -> None:
        """Make folder ``name`` here unless something by that name is already there."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=self.fd)

    def free_bytes(self) -> int:
        """Bytes free to this user on the filesystem of this folder."""
        st = os.statvfs(self.fd)
        return st.f_bavail * st.f_frsize

    def lock(self) -> bool:
        """Take the one-sync lock (flock); False when another holder has it."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            pass  # a filesystem without locks: one sync at a time is then up to the user
        return True

    def write_atomically(self, name: str, data: bytes) -> None:
        """Replace regular file ``name`` (or make it) with ``data``, never half written.

        Raises:
            NotRegular: ``name`` is there and is not a regular file: it is left alone.
            OSError: the drive is full or failed; ``name`` holds its old bytes.
        """
        st = self.lstat(name)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise NotRegular(name, kind_of(st.st_mode))
        tmp, fd = self._create_tmp(name)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise
        self.sync()

    def _create_tmp(self, name: str) -> tuple[str, int]:
        """A new temporary file beside ``name``: created exclusively, never through a link."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        base = f".{name}.{os.getpid()}.{threading.get_native_id()}"
        for n in range(_TMP_TRIES):
            tmp = f"{base}.tmp" if n == 0 else f"{base}.{n}.tmp"
            try:
                return tmp, os.open(tmp, flags, 0o644, dir_fd=self.fd)
            except FileExistsError:
                self.unlink(tmp)  # a dead writer's leftover, if it is a plain file
                with contextlib.suppress(FileExistsError):
                    return tmp, os.open(tmp, flags, 0o644, dir_fd=self.fd)
        raise OSError(errno.EEXIST, "no free temporary name", f"{self.shown}/{base}.tmp")

    def sync(self) -> None:
        """Make renames and new files here durable (where the filesystem can)."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            if exc.errno not in _DIR_SYNC_UNSUPPORTED:
                raise


def _read_upto(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``fd`` (fewer only at its end)."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = os.read(fd, min(left, _CHUNK_BYTES))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_capped(fd: int, name: str, limit: int) -> bytes:
    data = _read_upto(fd, limit + 1)
    if len(data) > limit:
        raise TooBig(name, limit)
    return data
