"""Secret handshake: known answers, both roles in memory, tampering, chunking and misuse."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError, LocalProtocolError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.shs import (
    ACCEPT_BYTES,
    AUTH_BYTES,
    HELLO_BYTES,
    OUTCOME_BYTES,
    ClientHandshake,
    HandshakeError,
    HandshakeStep,
    ServerHandshake,
)
from meshnode.testing import shs1test
from meshnode.types import PeerId
from tests.fakes import identity

ROOT = Path(__file__).resolve().parents[2]
VECTOR: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "boxstream.json").read_text())[
    "handshake"
]
CLIENT = identity(1)
SERVER = identity(2)
CLIENT_EPH = hashlib.sha256(b"meshnode shs vector: client ephemeral").digest()
SERVER_EPH = hashlib.sha256(b"meshnode shs vector: server ephemeral").digest()
OTHER_NETWORK = hashlib.sha256(b"another network").digest()


def _pair(
    *,
    client_net: bytes = DEFAULT_NETWORK_KEY,
    server_net: bytes = DEFAULT_NETWORK_KEY,
    server_key: bytes | None = None,
) -> tuple[ClientHandshake, ServerHandshake]:
    client = ClientHandshake(
        identity=CLIENT,
        server=PeerId(server_key or SERVER.feed_id),
        network_key=client_net,
        ephemeral_secret=CLIENT_EPH,
    )
    server = ServerHandshake(identity=SERVER, network_key=server_net, ephemeral_secret=SERVER_EPH)
    return client, server


def _hmac(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA-512-256, computed independently of shs.py."""
    return hmac.digest(key, message, hashlib.sha512)[:32]


def _transcript() -> list[bytes]:
    client, server = _pair()
    msg1 = client.start()
    msg2 = server.receive(msg1)
    msg3 = client.receive(msg2)
    msg4 = server.receive(msg3)
    assert client.receive(msg4) == b""
    return [msg1, msg2, msg3, msg4]


def test_known_answer_transcript_and_outcomes() -> None:
    assert VECTOR["network_key_hex"] == DEFAULT_NETWORK_KEY.hex()
    assert VECTOR["client_seed_hex"] == CLIENT.seed.hex()
    assert VECTOR["server_seed_hex"] == SERVER.seed.hex()
    assert VECTOR["client_ephemeral_secret_hex"] == CLIENT_EPH.hex()
    assert VECTOR["server_ephemeral_secret_hex"] == SERVER_EPH.hex()
    client, server = _pair()
    msg1 = client.start()
    msg2 = server.receive(msg1)
    msg3 = client.receive(msg2)
    msg4 = server.receive(msg3)
    client.receive(msg4)
    assert [m.hex() for m in (msg1, msg2, msg3, msg4)] == [
        VECTOR[f"msg{n}_hex"] for n in range(1, 5)
    ]
    assert client.result is not None
    assert server.result is not None
    assert client.result.outcome().hex() == VECTOR["client_outcome_hex"]
    assert server.result.outcome().hex() == VECTOR["server_outcome_hex"]


def test_message_sizes_are_64_64_112_80() -> None:
    sizes = [len(m) for m in _transcript()]
    assert sizes == [HELLO_BYTES, HELLO_BYTES, AUTH_BYTES, ACCEPT_BYTES] == [64, 64, 112, 80]
    assert sum(sizes) == 320


def test_both_sides_learn_each_other_and_mirror_keys() -> None:
    client, server = _pair()
    client.receive(server.receive(client.receive(server.receive(client.start()))))
    c, s = client.result, server.result
    assert c is not None
    assert s is not None
    assert c.peer == PeerId(SERVER.feed_id)
    assert s.peer == PeerId(CLIENT.feed_id)
    assert (c.encrypt_key, c.encrypt_nonce) == (s.decrypt_key, s.decrypt_nonce)
    assert (c.decrypt_key, c.decrypt_nonce) == (s.encrypt_key, s.encrypt_nonce)
    assert c.encrypt_key != c.decrypt_key
    assert len(c.outcome()) == OUTCOME_BYTES
    # Outcome nonces are the first 24 bytes of each hello's hmac.
    msg1, msg2, _, _ = _transcript()
    assert c.encrypt_nonce == msg2[:24]
    assert c.decrypt_nonce == msg1[:24]


def test_results_open_box_streams_both_ways() -> None:
    client, server = _pair()
    client.receive(server.receive(client.receive(server.receive(client.start()))))
    assert client.result is not None
    assert server.result is not None
    wire = client.result.encoder().encode(b"ping")
    assert server.result.decoder().feed(wire) == [b"ping"]
    wire = server.result.encoder().encode(b"pong")
    assert client.result.decoder().feed(wire) == [b"pong"]


def test_ephemeral_keys_change_every_output() -> None:
    first = _transcript()
    client = ClientHandshake(
        identity=CLIENT,
        server=PeerId(SERVER.feed_id),
        network_key=DEFAULT_NETWORK_KEY,
        ephemeral_secret=bytes(range(32)),
    )
    assert client.start() != first[0]


def test_other_network_key_fails_at_client_hello() -> None:
    client, server = _pair(client_net=OTHER_NETWORK)
    with pytest.raises(HandshakeError) as info:
        server.receive(client.start())
    assert info.value.step is HandshakeStep.CLIENT_HELLO
    assert isinstance(info.value, DecodeError)


def test_client_rejects_server_on_other_network() -> None:
    client, _ = _pair()
    client.start()
    server_eph = nacl.bindings.crypto_scalarmult_base(SERVER_EPH)
    with pytest.raises(HandshakeError) as info:
        client.receive(_hmac(OTHER_NETWORK, server_eph) + server_eph)
    assert info.value.step is HandshakeStep.SERVER_HELLO
    assert client.result is None


def test_client_dialing_wrong_server_key_fails_at_client_auth() -> None:
    client, server = _pair(server_key=identity(3).feed_id)
    msg3 = client.receive(server.receive(client.start()))
    with pytest.raises(HandshakeError) as info:
        server.receive(msg3)
    assert info.value.step is HandshakeStep.CLIENT_AUTH
    assert server.result is None


def test_server_impostor_fails_at_server_accept() -> None:
    client = ClientHandshake(
        identity=CLIENT,
        server=PeerId(SERVER.feed_id),
        network_key=DEFAULT_NETWORK_KEY,
        ephemeral_secret=CLIENT_EPH,
    )
    # Knows the network key but not SERVER's secret key, so it cannot open or sign.
    impostor = ServerHandshake(
        identity=identity(3), network_key=DEFAULT_NETWORK_KEY, ephemeral_secret=SERVER_EPH
    )
    msg2 = impostor.receive(client.start())
    msg3 = client.receive(msg2)
    with pytest.raises(HandshakeError) as info:
        impostor.receive(msg3)
    assert info.value.step is HandshakeStep.CLIENT_AUTH


def test_low_order_ephemeral_key_is_the_peers_fault() -> None:
    _, server = _pair()
    zero_point = bytes(32)
    mac = _hmac(DEFAULT_NETWORK_KEY, zero_point)
    server.receive(mac + zero_point)
    with pytest.raises(HandshakeError, match="low-order") as info:
        server.receive(bytes(AUTH_BYTES))
    assert info.value.step is HandshakeStep.CLIENT_AUTH


def test_client_auth_with_bad_long_term_key_fails() -> None:
    # A correctly boxed msg3 whose claimed key is not a usable point or signer.
    client, server = _pair()
    msg2 = server.receive(client.start())
    client_eph_secret, server_eph = CLIENT_EPH, msg2[32:]
    ab = nacl.bindings.crypto_scalarmult(client_eph_secret, server_eph)
    server_curve = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(SERVER.feed_id)
    a_big_b = nacl.bindings.crypto_scalarmult(client_eph_secret, server_curve)
    key = hashlib.sha256(DEFAULT_NETWORK_KEY + ab + a_big_b).digest()
    plain = bytes(64) + bytes(32)
    msg3 = nacl.bindings.crypto_secretbox(plain, bytes(24), key)
    with pytest.raises(HandshakeError) as info:
        server.receive(msg3)
    assert info.value.step is HandshakeStep.CLIENT_AUTH


@given(position=st.integers(0, 319), mask=st.integers(1, 255))
def test_any_flipped_byte_fails_the_receiver(position: int, mask: int) -> None:
    messages = _transcript()
    starts = [0, 64, 128, 240]
    index = max(i for i, start in enumerate(starts) if start <= position)
    tampered = bytearray(messages[index])
    tampered[position - starts[index]] ^= mask
    client, server = _pair()
    client.start()
    receivers = [server, client, server, client]
    for i in range(index):
        receivers[i].receive(messages[i])
    with pytest.raises(HandshakeError) as info:
        receivers[index].receive(bytes(tampered))
    assert info.value.step == index + 1
    with pytest.raises(LocalProtocolError):
        receivers[index].receive(b"")


@given(garbage=st.binary(max_size=400))
def test_server_garbage_gives_only_handshake_error(garbage: bytes) -> None:
    _, server = _pair()
    with contextlib.suppress(HandshakeError):
        server.receive(garbage)
        assert server.result is None


@given(garbage=st.binary(max_size=200))
def test_client_garbage_gives_only_handshake_error(garbage: bytes) -> None:
    client, _ = _pair()
    client.start()
    with contextlib.suppress(HandshakeError):
        client.receive(garbage)
        assert client.result is None


@given(cuts=st.lists(st.integers(1, 7), min_size=1, max_size=60))
def test_chunking_does_not_matter(cuts: list[int]) -> None:
    msg1, msg2, msg3, msg4 = _transcript()
    client, server = _pair()
    client.start()
    assert _feed_in_pieces(server, msg1, cuts) == msg2
    assert _feed_in_pieces(client, msg2, cuts) == msg3
    assert _feed_in_pieces(server, msg3, cuts) == msg4
    assert _feed_in_pieces(client, msg4, cuts) == b""
    assert client.result is not None
    assert server.result is not None


def _feed_in_pieces(
    machine: ClientHandshake | ServerHandshake, data: bytes, cuts: list[int]
) -> bytes:
    out, pos, i = b"", 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        assert machine.bytes_needed == len(data) - pos
        out += machine.receive(data[pos : pos + step])
        pos, i = pos + step, i + 1
    return out


def test_bytes_after_the_last_message_are_kept_for_box_stream() -> None:
    msg1, msg2, msg3, msg4 = _transcript()
    client, server = _pair()
    client.start()
    server.receive(msg1)
    client.receive(msg2)
    assert server.trailing_data == b""
    server.receive(msg3 + b"early")
    assert server.trailing_data == b"early"
    assert client.receive(msg4 + b"box") == b""
    assert client.trailing_data == b"box"
    assert client.bytes_needed == 0


def test_misuse_raises_local_protocol_error() -> None:
    client, server = _pair()
    with pytest.raises(LocalProtocolError):
        client.receive(b"x")
    msg1 = client.start()
    with pytest.raises(LocalProtocolError):
        client.start()
    client.receive(server.receive(client.receive(server.receive(msg1))))
    with pytest.raises(LocalProtocolError):
        client.receive(b"more")
    with pytest.raises(LocalProtocolError):
        server.receive(b"more")


def test_bad_sizes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="network key"):
        ServerHandshake(identity=SERVER, network_key=b"short", ephemeral_secret=SERVER_EPH)
    with pytest.raises(ValueError, match="ephemeral"):
        ServerHandshake(identity=SERVER, network_key=DEFAULT_NETWORK_KEY, ephemeral_secret=b"")
    with pytest.raises(ValueError, match="server key"):
        ClientHandshake(
            identity=CLIENT,
            server=PeerId(b"x"),
            network_key=DEFAULT_NETWORK_KEY,
            ephemeral_secret=CLIENT_EPH,
        )


def test_fresh_identities_complete_a_handshake() -> None:
    a, b = Identity.generate(), Identity.generate()
    client = ClientHandshake(
        identity=a, server=PeerId(b.feed_id), network_key=OTHER_NETWORK, ephemeral_secret=SERVER_EPH
    )
    server = ServerHandshake(identity=b, network_key=OTHER_NETWORK, ephemeral_secret=CLIENT_EPH)
    client.receive(server.receive(client.receive(server.receive(client.start()))))
    assert client.result is not None
    assert server.result is not None
    assert server.result.peer == PeerId(a.feed_id)


FORBIDDEN = {"asyncio", "socket", "serial", "zeroconf", "threading", "time", "subprocess", "select"}


@pytest.mark.parametrize("module", ["shs.py", "boxstream.py", "__init__.py"])
def test_secure_core_imports_no_io(module: str) -> None:
    tree = ast.parse((ROOT / "meshnode" / "secure" / module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN


def _adapter(argv: list[str], peer_bytes: bytes) -> tuple[int, bytes]:
    tx = io.BytesIO()
    code = shs1test.main(argv, rx=io.BytesIO(peer_bytes), tx=tx)
    return code, tx.getvalue()


def test_shs1test_adapter_arguments() -> None:
    net, pk = DEFAULT_NETWORK_KEY.hex(), SERVER.feed_id.hex()
    secret = nacl.bindings.crypto_sign_seed_keypair(SERVER.seed)[1].hex()
    assert _adapter([], b"") == (2, b"")
    assert _adapter(["server", net, pk], b"") == (2, b"")
    assert _adapter(["client", "zz", pk], b"") == (2, b"")
    assert _adapter(["server", net, secret, CLIENT.feed_id.hex()], b"") == (2, b"")


def test_shs1test_adapter_stops_writing_on_a_bad_peer() -> None:
    net, pk = DEFAULT_NETWORK_KEY.hex(), SERVER.feed_id.hex()
    code, out = _adapter(["client", net, pk], bytes(HELLO_BYTES))
    assert code == 1
    assert len(out) == HELLO_BYTES  # msg1 only
    code, out = _adapter(["client", net, pk], b"")
    assert (code, len(out)) == (1, HELLO_BYTES)
    secret = nacl.bindings.crypto_sign_seed_keypair(SERVER.seed)[1].hex()
    assert _adapter(["server", net, secret, pk], bytes(HELLO_BYTES)) == (1, b"")


def test_shs1test_server_answers_a_valid_hello() -> None:
    client, _ = _pair()
    secret = nacl.bindings.crypto_sign_seed_keypair(SERVER.seed)[1].hex()
    argv = ["server", DEFAULT_NETWORK_KEY.hex(), secret, SERVER.feed_id.hex()]
    code, out = _adapter(argv, client.start())
    assert code == 1  # the stream ends before msg3
    assert len(out) == HELLO_BYTES
    assert client.receive(out)  # a valid msg2 for this client: it answers with msg3
