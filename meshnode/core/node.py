"""The node core: our identity, the store, the policy, replication, and the rules that join them.

Sans-IO, as in aioquic: inputs are calls that carry ``now``; outputs are drained::

    node = Node(me, network_key=KEY, store=MemoryStore(), rng=random.Random(7))
    node.connect(peer, now=0.0, link=LinkInfo(mtu_bytes=1400))
    node.receive_frame(peer, frame, now=0.4)
    for peer_id, data in node.frames_to_send(): ...   # the shell routes each frame
    for event in node.events(): ...                   # EntryReceived, PeerMisbehaved
    deadline = node.next_deadline()                   # the shell arms a timer

No clocks, sockets or threads inside; the store is the one seam to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.codec.content import Contact, ContactAction, decode_contact, encode_contact
from meshnode.codec.message import (
    DEFAULT_MAX_CONTENT_BYTES,
    ContentType,
    Entry,
    create_entry,
    decode_entry,
    entry_author,
)
from meshnode.core.events import (
    ContactSkipped,
    Event,
    EventQueue,
    FeedForked,
    FollowsChanged,
    MailboxReleased,
    StoreOverCap,
)
from meshnode.core.feed import (
    FeedHead,
    IngestResult,
    Outcome,
    Verdict,
    check_content,
    judge_entry,
    restarts_at,
)
from meshnode.core.mailbox import Mailbox, MailboxConfig
from meshnode.core.policy import Policy, PolicyConfig, Scope
from meshnode.core.reach import OwnReach, peers_reach
from meshnode.core.replication import LinkInfo, ReplicationConfig, Replicator
from meshnode.core.store import ForkRecord, Store
from meshnode.core.verifier import InlineVerifier, Verifier
from meshnode.errors import DecodeError, ForkError, StoreCorrupt
from meshnode.secure.identity import Identity, format_feed_id, network_tag
from meshnode.types import FeedId, PeerId, Rng, Seq

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from meshnode.core.mailbox import Release

__all__ = ["CheckReport", "Node", "NodeConfig", "Problem"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Core settings."""

    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One stored entry that fails verification."""

    feed: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckReport:
    """Result of verifying every stored entry."""

    ok: bool
    entries: int
    problems: list[Problem]
    forked: list[dict[str, object]]

    def to_json(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "problems": [{"feed": p.feed, "seq": p.seq, "reason": p.reason} for p in self.problems],
            "forked": self.forked,
        }


class Node:
    """A node's core state: publish, ingest, policy and caps over one Store."""

    def __init__(
        self,
        identity: Identity,
        *,
        network_key: bytes,
        store: Store,
        config: NodeConfig | None = None,
        rng: Rng,
        verifier: Verifier | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.identity = identity
        self.feed_id = identity.feed_id
        self.network_key = network_key
        self.store = store
        self.config = config or NodeConfig()
        # Batch paths (importer.ingest_all) check signatures ahead through it; the shell
        # hands in a pool of threads, tests and one core keep the inline check.
        self.verifier: Verifier = verifier or InlineVerifier()
        self.policy = Policy(self.feed_id, self.config.policy)
        # Wall time for the mailbox's keep_days (the shell's clock; None: time stands at 0).
        self._clock_ms = clock_ms
        self.mailbox = Mailbox(self.config.mailbox)
        self._own_reach = OwnReach()
        self._forked = {f.feed: f.seq for f in store.forks()}
        self._wants: dict[FeedId, Scope] | None = None
        self._events = EventQueue()
        self._load_contacts()
        self._append_listeners: list[Callable[[FeedId, int, PeerId | None], None]] = []
        self._entry_listeners: list[Callable[[Entry], None]] = []
        self.replicator = Replicator(
            self,
            config=self.config.replication,
            rng=rng,
            epoch=store.epoch,
        )

    # -- replication: the sans-IO session API ---------------------------------------------

    def connect(self, peer: PeerId, *, now: float, link: LinkInfo | None = None) -> None:
        """Open a replication session with ``peer`` over a link with ``link``'s properties."""
        self.replicator.connect(peer, now, link or LinkInfo())

    def disconnect(self, peer: PeerId, *, now: float) -> None:
        """The link to ``peer`` is gone; its memory is kept for the next session."""
        session = self.replicator.sessions.get(peer)
        if session is not None:
            self._own_reach.session_ended(session, self.feed_id)
        self.replicator.disconnect(peer, now)

    def receive_frame(
        self,
        peer: PeerId,
        frame: bytes,
        *,
        now: float,
        ahead: Entry | None = None,
        signature_ok: bool | None = None,
    ) -> None:
        """Handle one frame from ``peer``; a bad one disconnects it with PeerMisbehaved.

        ``ahead``: the frame's entry as ``replicator.entries_ahead(peer)`` decoded it, and
        ``signature_ok`` the verdict of ``verifier.signature_valid`` on its bytes, when the
        shell checked it ahead; used only if the node rebuilds the same entry at its turn.
        """
        self.replicator.receive_frame(peer, frame, now, ahead, signature_ok)

    def frames_to_send(self) -> list[tuple[PeerId, bytes]]:
        """Drain the frames to send, each for one peer's link."""
        return self.replicator.frames_to_send()

    def delivered(self, peer: PeerId, nbytes: int) -> None:
        """The shell moved ``nbytes`` of entry frames to ``peer``: opens the send window."""
        self.replicator.delivered(peer, nbytes)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` next has work, or None."""
        return self.replicator.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now``, and release mailbox entries kept long enough."""
        self.replicator.handle_timer(now)
        self.expire_mailbox()

    def events(self) -> list[Event]:
        """Drain the node's events, then the replicator's."""
        return self._events.drain() + self.replicator.events()

    def replicated(self) -> dict[FeedId, Scope]:
        """Every feed the policy wants, with how much of it."""
        if self._wants is None:
            self._wants = {f: w for f in self.policy.hops() if (w := self.policy.scope(f))}
        return self._wants

    def scope(self, feed: FeedId) -> Scope | None:
        """How much of ``feed`` the policy wants, or None."""
        return self.replicated().get(feed)

    # -- writing our own feed -------------------------------------------------------------

    def publish(self, content_type: int, content: bytes, *, timestamp_ms: int) -> Entry:
        """Sign and append an entry to our own feed.

        Args:
            content_type: a ContentType code.
            content: payload bytes, at most ``max_content_bytes``.
            timestamp_ms: claimed wall time, passed in by the shell.

        Returns:
            The stored entry.

        Raises:
            ValueError: content too large.
            ForkError: our own feed is forked (the key is in use elsewhere).
            StoreFull: no room on disk; nothing was stored.
        """
        if self.feed_id in self._forked:
            raise ForkError("our own feed is forked: this key was used on another node")
        head = self.store.head(self.feed_id)
        entry = create_entry(
            self.identity,
            self.network_key,
            seq=Seq(head.latest + 1 if head else 1),
            previous=head.latest_id if head else None,
            timestamp_ms=timestamp_ms,
            content_type=content_type,
            content=content,
            max_content_bytes=self.config.max_content_bytes,
        )
        self._append(entry, Scope(0, None))
        return entry

    def post(self, text: str, *, timestamp_ms: int) -> Entry:
        """Publish a text post."""
        return self.publish(ContentType.POST, text.encode("utf-8"), timestamp_ms=timestamp_ms)

    def set_contact(self, action: ContactAction, target: FeedId, *, timestamp_ms: int) -> Entry:
        """Publish a follow, unfollow, block or unblock of ``target``."""
        content = encode_contact(Contact(action=action, target=target))
        return self.publish(ContentType.CONTACT, content, timestamp_ms=timestamp_ms)

    # -- taking entries from outside ------------------------------------------------------

    def ingest(
        self, raw: bytes, source: PeerId | None = None, *, signature_ok: bool | None = None
    ) -> IngestResult:
        """Verify a full-form entry from outside and store it if the policy wants it.

        Args:
            raw: full-form entry bytes from a peer, a bundle or a drive.
            source: the peer it came from, so it is not sent straight back.
            signature_ok: the verdict of ``verifier.signature_valid(raw, network_key)``
                when the shell checked it ahead (``self.verifier``); None: check it here.

        Returns:
            What happened; invalid input is REJECTED with a reason, never raised.

        Raises:
            StoreError: the disk failed (StoreFull when it is full); nothing stored is lost.
        """
        try:
            if entry_author(raw) not in self.replicated():
                # A feed we do not keep: no need to decode it (an import of a stranger's bundle).
                reason = "feed not in replication scope"
                return IngestResult(outcome=Outcome.UNWANTED, reason=reason)
            entry = decode_entry(raw, max_content_bytes=self.config.max_content_bytes)
        except DecodeError as exc:
            return IngestResult(outcome=Outcome.REJECTED, reason=f"malformed: {exc}")
        return self.ingest_entry(entry, source, signature_ok=signature_ok)

    @property
    def max_content_bytes(self) -> int:
        """Largest content of an entry this node accepts."""
        return self.config.max_content_bytes

    def ingest_entry(
        self, entry: Entry, source: PeerId | None = None, *, signature_ok: bool | None = None
    ) -> IngestResult:
        """``ingest`` for an entry already decoded (within ``max_content_bytes``)."""
        scope = self.replicated().get(entry.author)
        if scope is None:
            return IngestResult(outcome=Outcome.UNWANTED, reason="feed not in replication scope")
        forked_at = self._forked.get(entry.author)
        if forked_at is not None:
            reason = f"feed forked at seq {forked_at}"
            return IngestResult(outcome=Outcome.REJECTED, reason=reason, entry=entry)
        head = self.store.head(entry.author)
        stored_id = None
        if head is not None and head.first <= entry.seq <= head.latest:
            try:
                stored_id = self.store.entry_id(entry.author, entry.seq)
            except StoreCorrupt as exc:
                # Without the stored bytes we cannot tell a copy from a fork: refuse it.
                reason = f"stored entry {entry.seq} is damaged: {exc}"
                return IngestResult(outcome=Outcome.REJECTED, reason=reason, entry=entry)
            if stored_id == entry.id:
                # Same bytes as an entry we verified before: no need to verify again.
                return IngestResult(outcome=Outcome.HELD, entry=entry)
        try:
            check_content(entry, self.network_key, self.config.max_content_bytes, signature_ok)
        except DecodeError as exc:
            return IngestResult(outcome=Outcome.REJECTED, reason=str(exc), entry=entry)
        verdict = judge_entry(entry, head, stored_id)
        if verdict is Verdict.APPEND:
            self._append(entry, scope, source)
            return IngestResult(outcome=Outcome.ADDED, entry=entry)
        if verdict is Verdict.FORK:
            return self._record_fork(entry)
        if verdict is Verdict.GAP and self._restarts(entry, head, scope):
            self._append(entry, scope, source, restart=True)
            return IngestResult(outcome=Outcome.ADDED, entry=entry)
        latest = head.latest if head else 0
        first = head.first if head else 0
        reason = (
            f"gap: holds up to seq {latest}, got seq {entry.seq}"
            if verdict is Verdict.GAP
            else f"before the range held (from seq {first}), got seq {entry.seq}"
        )
        return IngestResult(outcome=Outcome.REJECTED, reason=reason, entry=entry)

    def _record_fork(self, entry: Entry) -> IngestResult:
        self.store.record_fork(ForkRecord(feed=entry.author, seq=entry.seq, raw=entry.raw))
        self._forked[entry.author] = entry.seq
        self._events.push(FeedForked(feed=entry.author, seq=entry.seq))
        reason = f"fork: conflicts with the stored chain at seq {entry.seq}"
        return IngestResult(outcome=Outcome.FORKED, reason=reason, entry=entry)

    def _restarts(self, entry: Entry, head: FeedHead | None, scope: Scope) -> bool:
        """Whether a capped feed starts afresh at ``entry``, past a gap (feed.restarts_at):
        never while the mailbox keeps a private entry of it."""
        return (
            head is not None
            and restarts_at(entry.seq, head.latest, scope.max_entries)
            and self.mailbox.floor(entry.author) is None
        )

    def _append(
        self, entry: Entry, scope: Scope, source: PeerId | None = None, *, restart: bool = False
    ) -> None:
        if restart:
            self.store.restart(entry)
            self.mailbox.evicted(entry.author, entry.seq)
        else:
            self.store.append(entry)
        if entry.content_type == ContentType.CONTACT and self._apply_contact(entry):
            self._wants = None
            self.replicator.policy_changed()
        if entry.author != self.feed_id:  # our own feed is never evicted: no need to keep
            private = entry.content_type == ContentType.PRIVATE
            now_ms = self.now_ms() if private else 0  # only a kept entry needs the clock
            released = self.mailbox.stored(
                entry.author, entry.seq, len(entry.raw), private=private, now_ms=now_ms
            )
            if released:  # rare: skip the sets and sorting for every entry stored
                self._released(released, skip=entry.author)
        self._enforce_caps(entry.author, scope)
        self.replicator.appended(entry.author, entry.seq, source)
        for listener in self._append_listeners:
            listener(entry.author, entry.seq, source)
        for on_entry in self._entry_listeners:
            on_entry(entry)

    def add_append_listener(self, listener: Callable[[FeedId, int, PeerId | None], None]) -> None:
        """Call ``listener(feed, seq, source)`` after every entry stored (shared channels)."""
        self._append_listeners.append(listener)

    def add_entry_listener(self, listener: Callable[[Entry], None]) -> None:
        """Call ``listener(entry)`` with every entry stored, as decoded (indexes use it)."""
        self._entry_listeners.append(listener)

    # -- policy -----------------------------------------------------------------------------

    def _load_contacts(self) -> None:
        for feed, seq in self.store.contacts():
            try:
                entry = decode_entry(self.store.get(feed, seq))
            except (DecodeError, StoreCorrupt) as exc:
                self._events.push(ContactSkipped(feed=feed, seq=seq, reason=str(exc)))
                continue
            self._apply_contact(entry)

    def _apply_contact(self, entry: Entry) -> bool:
        try:
            contact = decode_contact(entry.plain_content(self.config.max_content_bytes))
        except DecodeError:
            return False
        if self.policy.apply_contact(entry.author, entry.seq, contact):
            self._events.push(FollowsChanged(feed=entry.author, seq=entry.seq))
            return True
        return False

    def hops(self, feed: FeedId) -> int | None:
        """Hop distance of a wanted feed, None when it is not replicated."""
        scope = self.policy.scope(feed)
        return None if scope is None else scope.hops

    # -- the mailbox: private entries kept past the caps (core/mailbox.py) ------------------

    def now_ms(self) -> int:
        """Wall time in ms from the shell's clock (0 without one)."""
        return self._clock_ms() if self._clock_ms is not None else 0

    def expire_mailbox(self) -> None:
        """Release the private entries kept ``keep_days``; the caps then apply to them."""
        self._released(self.mailbox.expire(self.now_ms()))

    def _released(self, released: list[Release], skip: FeedId | None = None) -> None:
        for release in released:
            self._events.push(
                MailboxReleased(feed=release.feed, seq=release.seq, limit=release.limit)
            )
        for feed in sorted({r.feed for r in released} - {skip}):
            scope = self.replicated().get(feed)
            if scope is not None and self.store.head(feed) is not None:
                self._enforce_caps(feed, scope)

    def _evict(self, feed: FeedId, below: Seq) -> int:
        """Evict ``feed`` below ``below``, but never a private entry the mailbox keeps."""
        floor = self.mailbox.floor(feed)
        if floor is not None:
            below = min(below, floor)
        freed = self.store.evict(feed, below)
        self.mailbox.evicted(feed, below)
        return freed

    def reach(self, feed: FeedId) -> dict[FeedId, int]:
        """The highest seq of ``feed`` each known peer is known to hold (by its identity),
        from replication memory, and this node's own; peers known to hold none are left out."""
        known = self._own_reach.get() if feed == self.feed_id else {}
        out = peers_reach(self.replicator, self.store, feed, known)
        head = self.store.head(feed)
        if head is not None:
            out[self.feed_id] = int(head.latest)
        return out

    def _enforce_caps(self, feed: FeedId, scope: Scope) -> None:
        if scope.max_entries is not None:
            head = self.store.head(feed)
            assert head is not None
            if head.latest - head.first + 1 > scope.max_entries:
                self._evict(feed, Seq(head.latest - scope.max_entries + 1))
        cap = self.config.policy.feed_cap_bytes
        if cap and scope.hops >= 1 and self.store.feed_bytes(feed) > cap:
            self._evict_bytes(feed, self.store.feed_bytes(feed) - cap)
        global_cap = self.config.policy.global_cap_bytes
        if global_cap:
            excess = self.store.stats().entry_bytes - global_cap
            if excess > 0:
                self._evict_globally(excess)

    def _evict_bytes(self, feed: FeedId, excess: int) -> int:
        """Evict the oldest entries of ``feed`` until ``excess`` bytes are freed or one is left."""
        head = self.store.head(feed)
        if head is None:
            return 0
        floor = self.mailbox.floor(feed)
        end = head.latest if floor is None else min(head.latest, floor)
        seq, freed = head.first, 0
        while freed < excess and seq < end:
            freed += len(self.store.get(feed, seq))
            seq = Seq(seq + 1)
        return self._evict(feed, seq) if seq > head.first else 0

    def _evict_globally(self, excess: int) -> None:
        """Free ``excess`` bytes from the least wanted feeds first; our own feed is never cut."""
        hops = self.policy.hops()
        far = self.config.policy.max_hops + 1
        candidates = [f for f in self.store.feeds() if hops.get(f) != 0]
        candidates.sort(key=lambda f: (-hops.get(f, far), -self.store.feed_bytes(f)))
        for feed in candidates:
            excess -= self._evict_bytes(feed, excess)
            if excess <= 0:
                return
        self._events.push(StoreOverCap(excess_bytes=excess))

    # -- reading --------------------------------------------------------------------------

    def iter_feed(self, feed: FeedId, since: int = 0, limit: int | None = None) -> Iterator[Entry]:
        """Stored entries of ``feed`` with seq > since, oldest first."""
        head = self.store.head(feed)
        if head is None:
            return
        seq = max(since + 1, head.first)
        end = head.latest if limit is None else min(head.latest, seq + limit - 1)
        while seq <= end:
            yield decode_entry(self.store.get(feed, Seq(seq)), max_content_bytes=1 << 20)
            seq += 1

    def status(self, *, ranges: bool = True) -> dict[str, object]:
        """JSON-ready summary: identity, sizes, caps and (with ``ranges``) the range held
        of every feed."""
        stats = self.store.stats()
        policy = self.config.policy
        out: dict[str, object] = {
            "id": format_feed_id(self.feed_id),
            "network": network_tag(self.network_key),
            "feeds": stats.feeds,
            "entries": stats.entries,
            "bytes": stats.entry_bytes,
            "file_bytes": stats.file_bytes,
            "caps": {
                "max_hops": policy.max_hops,
                "full_hops": policy.full_hops,
                "partial_entries": policy.partial_entries,
                "feed_cap_bytes": policy.feed_cap_bytes,
                "global_cap_bytes": policy.global_cap_bytes,
                "max_content_bytes": self.config.max_content_bytes,
            },
            "follows": len(self.policy.graph.follows.get(self.feed_id, ())),
            "blocks": len(self.policy.graph.blocks.get(self.feed_id, ())),
        }
        if ranges:
            hops = self.policy.hops()
            out["ranges"] = {
                format_feed_id(f): {"first": a, "latest": b, "hops": hops.get(f)}
                for f, (a, b) in sorted(self.store.ranges().items())
            }
        out["mailbox"] = self.mailbox.status()
        out["forked"] = self._forks_json()
        return out

    def _forks_json(self) -> list[dict[str, object]]:
        return [{"feed": format_feed_id(f), "seq": s} for f, s in sorted(self._forked.items())]

    def check(self, progress: Callable[[int], None] | None = None) -> CheckReport:
        """Verify every stored entry: checksum, decoding, signature, seq and hash chain."""
        problems: list[Problem] = []
        entries = 0
        for feed, (first, latest) in sorted(self.store.ranges().items()):
            previous_id = None
            for seq in range(first, latest + 1):
                entries += 1
                problem = self._check_one(feed, Seq(seq), previous_id)
                if isinstance(problem, Problem):
                    problems.append(problem)
                    previous_id = None
                else:
                    previous_id = problem
                if progress is not None and entries % 1000 == 0:
                    progress(entries)
        return CheckReport(
            ok=not problems, entries=entries, problems=problems, forked=self._forks_json()
        )

    def _check_one(self, feed: FeedId, seq: Seq, previous_id: bytes | None) -> Problem | bytes:
        name = format_feed_id(feed)
        try:
            entry = decode_entry(self.store.get(feed, seq), max_content_bytes=1 << 20)
            if entry.author != feed or entry.seq != seq:
                return Problem(feed=name, seq=seq, reason="record holds another entry")
            check_content(entry, self.network_key, self.config.max_content_bytes)
        except (StoreCorrupt, DecodeError) as exc:
            return Problem(feed=name, seq=seq, reason=str(exc))
        if previous_id is not None and entry.previous != previous_id:
            return Problem(feed=name, seq=seq, reason="previous hash does not match entry seq-1")
        return entry.id

    # -- lifecycle ------------------------------------------------------------------------

    def compact(self) -> int:
        """Reclaim the space of evicted entries; returns bytes reclaimed."""
        return self.store.compact()

    def flush(self) -> None:
        """Make everything stored so far durable."""
        self.store.flush()

    def close(self) -> None:
        """Save replication memory, flush and release the store."""
        self.replicator.close()
        self.store.close()
