"""A process that checks signatures for ``host.verify``'s pool, and the pipe format it speaks.

Run as ``python -m meshnode.host.verify_worker``: requests on stdin, replies on stdout.
Every message is a frame: length u32 little-endian, then that many bytes.

* The first request is the network key; the worker replies with an empty frame once it can
  check (its imports took time the pool spent checking by itself).
* Each later request is a batch: count u32, count x entry length u32, then the entries back
  to back. The reply is one byte per entry: 0 bad signature, 1 good, 2 not checked (too
  short to carry a signature: the node rejects it as malformed).

End of input ends the worker, and so does a malformed request: the pool then treats the
batches it sent there as unchecked. The worker imports only the standard library and
PyNaCl, so it starts in tens of milliseconds; its check is ``core.verifier.signature_valid``
(the property test compares the two on random mixes).
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from array import array

import nacl.bindings
import nacl.exceptions

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_FRAME_BYTES",
    "decode_batch",
    "decode_verdicts",
    "encode_batch",
    "main",
    "read_frame",
    "reply",
    "write_frame",
]

MAX_ENTRY_BYTES = 64 << 10  # longer ones are left to the node: no valid entry is that long
MAX_FRAME_BYTES = 16 << 20  # a batch is cut at about 64 KiB; anything far past it is wrong
_LEN = struct.Struct("<I")
_AUTHOR_END = 33  # header byte, then the author's 32-byte key
_SIGNATURE_BYTES = 64
_BAD, _GOOD, _UNCHECKED = 0, 1, 2
_VERDICTS: tuple[bool | None, ...] = (False, True, None)


def encode_batch(raws: list[bytes]) -> bytes:
    """A batch request for ``raws`` (each at most MAX_ENTRY_BYTES)."""
    lengths = array("I", [len(raw) for raw in raws])
    if sys.byteorder != "little":
        lengths.byteswap()
    return _LEN.pack(len(raws)) + lengths.tobytes() + b"".join(raws)


def decode_batch(payload: bytes) -> list[bytes]:
    """Inverse of encode_batch; ValueError if the lengths do not add up."""
    if len(payload) < 4:
        raise ValueError("batch without a count")
    (count,) = _LEN.unpack_from(payload)
    pos = 4 + 4 * count
    if pos > len(payload):
        raise ValueError("batch shorter than its lengths")
    lengths = array("I")
    lengths.frombytes(payload[4:pos])
    if sys.byteorder != "little":
        lengths.byteswap()
    raws = []
    for n in lengths:
        raws.append(payload[pos : pos + n])
        pos += n
    if pos != len(payload):
        raise ValueError("batch lengths do not add up")
    return raws


def decode_verdicts(reply: bytes) -> list[bool | None]:
    """A batch reply as ``signature_valid`` verdicts; ValueError on an unknown code."""
    try:
        return [_VERDICTS[code] for code in reply]
    except IndexError:
        raise ValueError("unknown verdict code") from None


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame to ``fd``; OSError (BrokenPipeError) if the other end is gone."""
    data = memoryview(_LEN.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def read_frame(fd: int) -> bytes | None:
    """Read one frame from ``fd``; None at end of input, on a cut or oversized frame."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    (length,) = _LEN.unpack(head)
    if length > MAX_FRAME_BYTES:
        return None
    return _read_exactly(fd, length)


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def reply(raws: list[bytes], network_key: bytes) -> bytes:
    """The reply to a batch of ``raws``: one verdict code per entry."""
    return bytes([_verdict(raw, network_key) for raw in raws])


def _verdict(raw: bytes, network_key: bytes) -> int:
    if len(raw) < _AUTHOR_END + _SIGNATURE_BYTES:
        return _UNCHECKED
    body, signature = raw[:-_SIGNATURE_BYTES], raw[-_SIGNATURE_BYTES:]
    try:
        nacl.bindings.crypto_sign_open(signature + network_key + body, raw[1:_AUTHOR_END])
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return _BAD
    return _GOOD


def main() -> None:
    """Answer batches on stdout until stdin ends."""
    # Ctrl-C reaches the whole process group: the pool that started us decides when we end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    network_key = read_frame(0)
    try:
        if network_key is None:
            return
        write_frame(1, b"")
        while (payload := read_frame(0)) is not None:
            try:
                raws = decode_batch(payload)
            except ValueError:
                return
            write_frame(1, reply(raws, network_key))
    except OSError:  # the pool closed our output: it no longer wants the answers
        return


if __name__ == "__main__":
    main()
