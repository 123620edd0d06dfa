"""Per-fragment repair on a noisy point-to-point cable: small fragments, and only what was lost.

On a cable that drops 1 % of its bytes, a 188-byte frame arrives whole 15 % of the time, so
asking again for whole entries costs about ten sends each. Here the receiver measures the
loss and tells the sender (which, until told, goes by the loss it measures itself: a noisy
line is taken to be noisy both ways); the sender cuts its messages into fragments of the
size that carries most per byte (``fragment_mtu``), keeps the fragments of its last
messages, and sends again only those the receiver says it lacks. The receiver hands each
message up as soon as it is whole (holding later ones behind one being mended measured
slower: the channel's own gap buffer orders them, and the channel is told how long mending
may take). A message of which nothing arrived is left to the channel's WANT.

Link control packet (radio/fragment.py gives header 0xFF no other use: fragment 127 with
MORE would need a fragment 128)::

    header   1 byte   0xFF
    kind     1 byte   0x01 REPAIR, 0x02 LOSS
    body     kind-dependent (below)
    crc      2 bytes  CRC-16/CCITT-FALSE of every byte before it, big-endian (as fragment.py)

    REPAIR   message_id (1 byte), then held (1..16 bytes): bit i % 8 of byte i // 8 set
             means fragment i is held. The sender sends again every fragment of that
             message whose bit is clear or lies past the bitmap.
    LOSS     byte_loss_per_100k (2 bytes, big-endian): the share of bytes the receiver
             finds lost on the way to it, in units of 1/100,000 (0..65,535).

Budget: a REPAIR is 6 to 21 bytes, a LOSS 6, each plus 3 of KISS framing. A sender keeps
the fragments of its last ``KEPT_MESSAGES`` and answers at most ``MAX_REPAIRS`` REPAIRs
for each; a receiver holds at most ``MAX_PARTIALS`` partial messages of at most its
``max_message_bytes`` and forgets one after ``MAX_REQUESTS`` unanswered requests. Any layout
change changes the vectors in tests/vectors/repair.json.
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass, field

from meshnode.errors import DecodeError
from meshnode.radio.fragment import decode_link_packet

__all__ = [
    "KEPT_MESSAGES",
    "LOSS_ON",
    "MAX_PARTIALS",
    "MAX_REPAIRS",
    "MAX_REQUESTS",
    "CableRepair",
    "LossMeter",
    "LossReport",
    "RepairReceiver",
    "RepairRequest",
    "RepairSender",
    "decode_link_control",
    "encode_loss",
    "encode_repair",
    "fragment_mtu",
    "is_link_control",
]

CONTROL_HEADER = 0xFF
_REPAIR, _LOSS = 0x01, 0x02
_MAX_BITMAP_BYTES = 16  # 128 fragments
_LOSS_UNIT = 100_000
KEPT_MESSAGES = 32  # fragmented messages a sender can still repair
MAX_PARTIALS = 32  # partial messages a receiver holds (more: the oldest is given up)
MAX_REQUESTS = 6  # unanswered REPAIRs before a partial message is given up
MAX_REPAIRS = 2 * MAX_REQUESTS  # REPAIRs a sender answers per message
_REPAIR_ROUNDS = 5  # rounds of repair a message may take before it is asked for again
_RECENT_DONE = 64  # message ids completed lately: a late repeat of one starts nothing
LOSS_ON = 0.0005  # below this share of bytes lost, whole frames cost less than fragments
_MIN_FRAGMENT_BYTES = 16
_METER_DECAY = 0.98  # per packet: the meter remembers about the last fifty packets


def _crc(data: bytes) -> bytes:
    """CRC-16/CCITT-FALSE, big-endian: the link packets' own (radio/fragment.py)."""
    return binascii.crc_hqx(data, 0xFFFF).to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """The receiver holds fragments ``held`` of ``message_id`` and wants the others."""

    message_id: int
    held: frozenset[int]


@dataclass(frozen=True, slots=True)
class LossReport:
    """The share of bytes the receiver finds lost on the way to it."""

    byte_loss: float


def is_link_control(packet: bytes) -> bool:
    """True for a link control packet (REPAIR or LOSS), not a message or fragment."""
    return bool(packet) and packet[0] == CONTROL_HEADER


def encode_repair(message_id: int, held: frozenset[int] | set[int]) -> bytes:
    """REPAIR asking for every fragment of ``message_id`` not in ``held``."""
    if not 0 <= message_id <= 0xFF:
        raise ValueError(f"message id {message_id} outside 0..255")
    if any(not 0 <= i < 8 * _MAX_BITMAP_BYTES for i in held):
        raise ValueError("fragment index outside 0..127")
    bitmap = bytearray(max(1, -(-(max(held, default=0) + 1) // 8)))
    for i in held:
        bitmap[i // 8] |= 1 << (i % 8)
    body = bytes((CONTROL_HEADER, _REPAIR, message_id)) + bytes(bitmap)
    return body + _crc(body)


def encode_loss(byte_loss: float) -> bytes:
    """LOSS saying ``byte_loss`` (a share, 0..1) of the bytes sent to us are lost."""
    units = min(0xFFFF, max(0, round(byte_loss * _LOSS_UNIT)))
    body = bytes((CONTROL_HEADER, _LOSS)) + units.to_bytes(2, "big")
    return body + _crc(body)


def decode_link_control(raw: bytes) -> RepairRequest | LossReport:
    """Parse and check one link control packet.

    Raises:
        DecodeError: not a control packet, a CRC mismatch, an unknown kind or a bad length.
    """
    if len(raw) < 5 or raw[0] != CONTROL_HEADER:
        raise DecodeError("not a link control packet")
    body = raw[:-2]
    if _crc(body) != raw[-2:]:
        raise DecodeError("link control CRC mismatch")
    kind = body[1]
    if kind == _LOSS and len(body) == 4:
        return LossReport(byte_loss=int.from_bytes(body[2:4], "big") / _LOSS_UNIT)
    if kind == _REPAIR and 4 <= len(body) <= 3 + _MAX_BITMAP_BYTES:
        bitmap = body[3:]
        held = frozenset(i for i in range(8 * len(bitmap)) if bitmap[i // 8] >> (i % 8) & 1)
        return RepairRequest(message_id=body[2], held=held)
    raise DecodeError(f"link control kind {kind} of {len(body)} bytes")


def fragment_mtu(byte_loss: float, *, overhead_bytes: int, mtu_bytes: int) -> int | None:
    """The link packet size that carries most per byte sent at ``byte_loss``, or None when
    whole packets of ``mtu_bytes`` do as well (little or no loss).

    A packet of ``s`` bytes (``overhead_bytes`` more on the wire) arrives whole with
    probability (1 - loss) ** (s + overhead), and carries s minus the fragment header.
    """
    if byte_loss < LOSS_ON:
        return None
    keep = 1.0 - min(byte_loss, 0.5)

    def carried(size: int) -> float:
        return (size - 4) / (size + overhead_bytes) * keep ** (size + overhead_bytes)

    best = max(range(_MIN_FRAGMENT_BYTES, mtu_bytes + 1), key=carried)
    return None if best >= mtu_bytes else best


class LossMeter:
    """The share of bytes lost on the way to us, from packets that arrive whole or damaged."""

    __slots__ = ("_bad", "_bytes", "_good")

    def __init__(self) -> None:
        self._good = 2.0  # a prior: a link is clean until packets say otherwise
        self._bad = 0.0
        self._bytes = 2.0 * 200

    def seen(self, size_bytes: int, *, whole: bool) -> None:
        """One packet of ``size_bytes`` arrived, ``whole`` or damaged."""
        self._good *= _METER_DECAY
        self._bad *= _METER_DECAY
        self._bytes *= _METER_DECAY
        if whole:
            self._good += 1
        else:
            self._bad += 1
        self._bytes += size_bytes

    @property
    def byte_loss(self) -> float:
        """A packet of the mean size arrives whole with probability (1 - loss) ** size."""
        packets = self._good + self._bad
        mean_bytes = max(1.0, self._bytes / packets)
        whole = max(self._good / packets, 0.01)
        return 1.0 - math.exp(math.log(whole) / mean_bytes)


class RepairSender:
    """The fragments of our last messages, to send again those a receiver lacks."""

    __slots__ = ("_kept", "_repairs")

    def __init__(self) -> None:
        self._kept: dict[int, list[bytes]] = {}
        self._repairs: dict[int, int] = {}  # REPAIRs answered, by message id

    def sent(self, message_id: int, packets: list[bytes]) -> None:
        """Keep the fragments of a message just sent (whole packets need no repair)."""
        if len(packets) < 2:
            return
        self._kept.pop(message_id, None)
        self._kept[message_id] = packets
        self._repairs.pop(message_id, None)
        while len(self._kept) > KEPT_MESSAGES:
            del self._kept[next(iter(self._kept))]

    def repair(self, request: RepairRequest) -> list[bytes]:
        """The fragments ``request`` lacks (none if the message is no longer kept, or was
        repaired MAX_REPAIRS times: a few bytes of request never buy unbounded sending)."""
        packets = self._kept.get(request.message_id)
        done = self._repairs.get(request.message_id, 0)
        if packets is None or done >= MAX_REPAIRS:
            return []
        self._repairs[request.message_id] = done + 1
        return [p for i, p in enumerate(packets) if i not in request.held]


@dataclass(slots=True)
class _Partial:
    chunks: dict[int, bytes] = field(default_factory=dict)
    count: int | None = None  # known once the last fragment (no MORE) arrived
    passed: bool = False  # a later message began: the sender is done with this one
    last_s: float = 0.0
    asked_s: float | None = None
    requests: int = 0
    size: int = 0  # payload bytes held

    def whole(self) -> bytes | None:
        if self.count is None or any(i not in self.chunks for i in range(self.count)):
            return None
        return b"".join(self.chunks[i] for i in range(self.count))


class RepairReceiver:
    """Rebuilds fragmented messages of one sender, asking for lost fragments."""

    def __init__(self, *, gap_s: float, retry_s: float, max_message_bytes: int) -> None:
        self.gap_s = gap_s  # no fragment for this long: the rest is lost
        self.retry_s = retry_s  # a REPAIR unanswered this long is sent again
        self.max_message_bytes = max_message_bytes
        self.meter = LossMeter()
        self.given_up = 0
        self.repaired = 0  # fragments that filled a hole after a REPAIR
        self._partials: dict[int, _Partial] = {}  # by message id, oldest first
        self._done: dict[int, None] = {}  # message ids completed lately

    def feed(self, packet: bytes, now: float) -> list[bytes]:
        """Take one link packet (not a control packet); return the messages it makes whole."""
        try:
            link = decode_link_packet(packet)
        except DecodeError:
            self.meter.seen(len(packet), whole=False)
            return []
        self.meter.seen(len(packet), whole=True)
        if link.message_id is None:
            return [link.payload] if len(link.payload) <= self.max_message_bytes else []
        if link.message_id in self._done:
            return []  # a repeat of a fragment of a message already whole
        partial = self._partials.get(link.message_id)
        if partial is None:
            for earlier in self._partials.values():
                earlier.passed = True
            partial = self._partials[link.message_id] = _Partial()
            while len(self._partials) > MAX_PARTIALS:
                self._give_up(next(iter(self._partials)))
        if link.index not in partial.chunks:
            self.repaired += partial.asked_s is not None
            partial.size += len(link.payload)
        partial.chunks[link.index] = link.payload
        partial.last_s = now
        if not link.more:
            partial.count = link.index + 1
        if partial.size > self.max_message_bytes:
            self._give_up(link.message_id)
            return []
        whole = partial.whole()
        if whole is None:
            return []
        del self._partials[link.message_id]
        self._done[link.message_id] = None
        while len(self._done) > _RECENT_DONE:
            del self._done[next(iter(self._done))]
        return [whole]

    def requests(self, now: float) -> list[bytes]:
        """REPAIR packets due now (a partial message given up after MAX_REQUESTS)."""
        out = []
        for message_id, partial in list(self._partials.items()):
            if not self._due(partial, now):
                continue
            if partial.requests >= MAX_REQUESTS:
                self._give_up(message_id)
                continue
            partial.requests += 1
            partial.asked_s = now
            out.append(encode_repair(message_id, set(partial.chunks)))
        return out

    def next_deadline(self) -> float | None:
        """When a REPAIR may next be due; None when no message has holes."""
        times = [self._due_at(p) for p in self._partials.values()]
        return min(times, default=None)

    @property
    def partials(self) -> int:
        """Partial messages held."""
        return len(self._partials)

    def _due_at(self, partial: _Partial) -> float:
        if partial.asked_s is not None:
            return partial.asked_s + self.retry_s
        if partial.count is not None or partial.passed:
            return partial.last_s
        return partial.last_s + self.gap_s

    def _due(self, partial: _Partial, now: float) -> bool:
        return self._due_at(partial) <= now

    def _give_up(self, message_id: int) -> None:
        self._partials.pop(message_id, None)
        self.given_up += 1


class CableRepair:
    """Both ends of repair on one cable: what to send first, and whole messages.

    ``frame_s`` is the wire time of a typical whole frame: it times the requests and the
    loss reports. ``overhead_bytes`` is what the line adds to each packet (KISS: 3).
    """

    def __init__(
        self, *, frame_s: float, mtu_bytes: int, overhead_bytes: int, max_message_bytes: int
    ) -> None:
        self.mtu_limit = mtu_bytes
        self.overhead_bytes = overhead_bytes
        self.report_gap_s = max(0.5, frame_s)
        self.report_every_s = max(5.0, 10 * frame_s)
        self.sender = RepairSender()
        self.receiver = RepairReceiver(
            gap_s=max(0.3, frame_s / 2),
            retry_s=max(0.5, 1.5 * frame_s + 0.2),
            max_message_bytes=max_message_bytes,
        )
        self.peer_loss = 0.0  # what the far end last said it loses of our bytes
        self.peer_told = False  # until it says, the line is taken to lose what we lose
        self.mtu_bytes = mtu_bytes  # the link packet size to cut our messages to now
        self.repairs_asked = 0
        self.fragments_resent = 0
        self._urgent: list[bytes] = []
        self._reported: tuple[float, float] | None = None  # (loss, when)

    def told_loss(self, byte_loss: float) -> None:
        """The far end loses ``byte_loss`` of our bytes: cut our messages to suit."""
        self.peer_told = True
        self._cut(byte_loss)

    def _cut(self, byte_loss: float) -> None:
        self.peer_loss = byte_loss
        best = fragment_mtu(byte_loss, overhead_bytes=self.overhead_bytes, mtu_bytes=self.mtu_limit)
        self.mtu_bytes = self.mtu_limit if best is None else best

    @property
    def extra_delay_s(self) -> float:
        """How much longer a message of ours may take to arrive whole while we cut them into
        fragments: a few rounds of repair (a REPAIR or a fragment sent again may be lost
        too; a shorter allowance measured more entries sent again whole), else none."""
        return _REPAIR_ROUNDS * self.receiver.retry_s if self.mtu_bytes < self.mtu_limit else 0.0

    def receive(self, packet: bytes, now: float) -> list[bytes]:
        """One link packet from the cable; the messages it makes whole."""
        if is_link_control(packet):
            try:
                control = decode_link_control(packet)
            except DecodeError:
                self.receiver.meter.seen(len(packet), whole=False)
                return []
            self.receiver.meter.seen(len(packet), whole=True)
            if isinstance(control, LossReport):
                self.told_loss(control.byte_loss)
            else:
                resent = self.sender.repair(control)
                self.fragments_resent += len(resent)
                self._urgent += resent
            return []
        messages = self.receiver.feed(packet, now)
        self._maybe_report(now)
        loss = self.receiver.meter.byte_loss
        if not self.peer_told and loss > max(LOSS_ON, 1.5 * self.peer_loss):
            self._cut(loss)  # the far end has not said yet: a noisy line is noisy both ways
        return messages

    def take_urgent(self, now: float) -> list[bytes]:
        """Packets to put on the wire before any message: requests, repairs, a report."""
        requests = self.receiver.requests(now)
        self.repairs_asked += len(requests)
        urgent, self._urgent = [*requests, *self._urgent], []
        return urgent

    def next_deadline(self) -> float | None:
        """When ``take_urgent`` may next have something (None: nothing pending)."""
        return self.receiver.next_deadline()

    def _maybe_report(self, now: float) -> None:
        loss = self.receiver.meter.byte_loss
        if self._reported is None:
            if loss < LOSS_ON:
                return
        else:
            told, at = self._reported
            if now - at < self.report_gap_s or (told < LOSS_ON and loss < LOSS_ON):
                return
            changed = abs(math.log(max(loss, 1e-6) / max(told, 1e-6))) > math.log(1.5)
            if not changed and now - at < self.report_every_s:
                return
        self._reported = (loss, now)
        self._urgent.append(encode_loss(loss))
