"""Hostile frames fed to a connected node must be contained (PeerMisbehaved at most)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshnode.codec.frame import FrameType, Hello, encode_hello
from meshnode.codec.varint import encode_varint
from meshnode.core.events import PeerMisbehaved
from meshnode.core.replication import LinkInfo
from meshnode.sim.mesh import LinkSpec, Mesh
from meshnode.types import PeerId

if TYPE_CHECKING:
    from meshnode.core.node import Node

MAX_VARINT = (1 << 64) - 1


def connected_pair(mtu_bytes: int = 65536) -> Mesh:
    """Two nodes that follow each other, hold a few entries each, and have synced."""
    mesh = Mesh(2, seed=1)
    mesh.follow(0, 1)
    mesh.follow(1, 0)
    for k in range(2):
        mesh.publish(0, f"zero {k}")
        mesh.publish(1, f"one {k}")
    mesh.add_links([(0, 1)], LinkSpec(mtu_bytes=mtu_bytes))
    mesh.run_until_quiet(limit_s=30)
    assert mesh.clocks_agree()
    return mesh


def leader_index(mesh: Mesh) -> int:
    """The node that sent the full clock (smaller id): its table is the one that is filled."""
    return 0 if mesh.feed(0) < mesh.feed(1) else 1


def hammer(node: Node, peer: PeerId, frames: list[bytes], now: float) -> None:
    """Feed ``frames`` from ``peer``, run the node's outputs and timers, then close it."""
    for frame in frames:
        node.receive_frame(peer, frame, now=now)
        node.frames_to_send()
        node.events()
        node.handle_timer(now + 100)
        node.frames_to_send()
    node.disconnect(peer, now=now)
    node.close()


def test_run_frame_with_index_past_64_bits_is_contained() -> None:
    mesh = connected_pair()
    node, peer = mesh.node(0), PeerId(mesh.feed(1))
    frame = bytes((FrameType.RUN,)) + encode_varint(MAX_VARINT) + b"\x00\x00"
    node.receive_frame(peer, frame, now=mesh.now)  # raises ValueError today


def test_define_past_64_bits_does_not_break_disconnect() -> None:
    mesh = connected_pair()
    node, peer = mesh.node(0), PeerId(mesh.feed(1))
    frame = bytes((FrameType.DEFINE,)) + encode_varint(MAX_VARINT) + b"\x05\x07"
    node.receive_frame(peer, frame, now=mesh.now)
    node.disconnect(peer, now=mesh.now)  # encode_peer_memory raises ValueError today


def test_hello_with_huge_received_count_is_refused() -> None:
    mesh = connected_pair()
    node, peer = mesh.node(0), PeerId(mesh.feed(1))
    node.connect(peer, now=mesh.now, link=LinkInfo())
    node.frames_to_send()
    hello = Hello(
        version=1,
        epoch=mesh.nodes[1].store.epoch,
        seen_epoch=mesh.nodes[0].store.epoch,
        got_yours=True,
        received=MAX_VARINT,
    )
    node.receive_frame(peer, encode_hello(hello), now=mesh.now)
    assert any(isinstance(e, PeerMisbehaved) for e in node.events())
    node.post("one more", timestamp_ms=0)
    node.disconnect(peer, now=mesh.now)
    node.close()


def test_want_key_answer_fits_the_link_mtu() -> None:
    mesh = connected_pair(mtu_bytes=255)
    i = leader_index(mesh)
    node, peer = mesh.node(i), PeerId(mesh.feed(1 - i))
    request = bytes((FrameType.WANT_KEY,)) + b"\x00" * 200  # 201 bytes: index 0, 200 times
    node.receive_frame(peer, request, now=mesh.now)
    sizes = [len(frame) for _, frame in node.frames_to_send()]
    assert sizes  # the key was defined
    assert max(sizes) <= 255  # 6,601 bytes today: over the MTU, 33x the request
    assert sum(sizes) <= 4 * len(request)


_varints = st.one_of(
    st.integers(0, 16),
    st.integers(0, MAX_VARINT),
    st.sampled_from([(1 << 61) - 1, 1 << 63, MAX_VARINT - 1, MAX_VARINT]),
)
_frames = st.one_of(
    st.binary(max_size=48),
    st.tuples(st.integers(1, 7), st.binary(max_size=80)).map(lambda t: bytes((t[0],)) + t[1]),
    st.tuples(st.integers(1, 7), st.lists(_varints, max_size=8)).map(
        lambda t: bytes((t[0],)) + b"".join(encode_varint(v) for v in t[1])
    ),
)


@settings(max_examples=40, deadline=None, database=None)
@example(frames=[bytes((FrameType.RUN,)) + encode_varint(MAX_VARINT) + b"\x00\x00"], target=0)
@given(frames=st.lists(_frames, min_size=1, max_size=6), target=st.integers(0, 1))
def test_random_frames_never_raise(frames: list[bytes], target: int) -> None:
    mesh = connected_pair()
    hammer(mesh.node(target), PeerId(mesh.feed(1 - target)), frames, mesh.now)
