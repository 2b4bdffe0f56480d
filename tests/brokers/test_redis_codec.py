"""The envelope between nodes: lossless round trips, and foreign payloads refused cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.brokers import redis_codec as codec
from hubbub.core.broker import (
    ChannelInfo,
    ConnectionInfo,
    Direct,
    NodeAnswer,
    NodeQuery,
    PresenceDelta,
    PresenceEntry,
    Publication,
)

texts = st.text(min_size=1, max_size=40)
raw = st.binary(max_size=200)
optional_raw = st.none() | raw
entries = st.lists(st.builds(PresenceEntry, texts, optional_raw), max_size=3).map(tuple)


@given(
    st.builds(Publication, texts, texts, texts, raw, optional_raw, st.none() | texts),
    optional_raw,
)
def test_publications_round_trip(publication: Publication, tally: bytes | None) -> None:
    payload = codec.encode_publication("node-1", publication, tally)
    assert codec.origin_node(payload) == (codec.PUBLICATION, "node-1")
    assert codec.decode_publication(payload) == (publication, tally)
    assert codec.tally_of(payload) == tally


@given(st.builds(Direct, texts, texts, texts, raw, optional_raw, st.none() | texts))
def test_directs_round_trip(direct: Direct) -> None:
    assert codec.decode_direct(codec.encode_direct("n", direct)) == direct


@given(st.builds(PresenceDelta, texts, texts, texts, entries, entries))
def test_presence_deltas_round_trip(delta: PresenceDelta) -> None:
    assert codec.decode_presence(codec.encode_presence("n", delta)) == delta


def test_disconnect_round_trips() -> None:
    payload = codec.encode_disconnect("n", "app", "bob", 4020, "disconnected by admin", b"n:7")
    target = ("app", "bob", 4020, "disconnected by admin")
    assert codec.decode_disconnect(payload) == (target, b"n:7")
    assert codec.tally_of(payload) == b"n:7"


@given(raw, st.integers(min_value=0, max_value=10**9))
def test_counts_round_trip(tally: bytes, count: int) -> None:
    payload = codec.encode_count("node-2", tally, count)
    assert codec.origin_node(payload) == (codec.COUNT, "node-2")
    assert codec.decode_count(payload) == (tally, count)
    assert codec.tally_of(payload) is None  # not an event that can be counted


def test_a_count_that_is_not_a_number_is_refused() -> None:
    parts = codec.encode_count("n", b"t", 0)[:-1] + b"x"
    with pytest.raises(codec.EnvelopeError, match="bad count"):
        codec.decode_count(parts)


@pytest.mark.parametrize(
    "payload",
    [b"", b"P", b"P\x00\x00\x00\x09abc", b"P\x00\x00\x00\x01n\xff\xff\xff\xff"],
)
def test_foreign_payloads_raise_envelope_error(payload: bytes) -> None:
    with pytest.raises(codec.EnvelopeError):
        codec.origin_node(payload)
        codec.decode_publication(payload)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_else(payload: bytes) -> None:
    decoders = (
        codec.decode_publication,
        codec.decode_direct,
        codec.decode_presence,
        codec.decode_disconnect,
        codec.decode_count,
        codec.tally_of,
    )
    for decode in decoders:
        try:
            codec.origin_node(payload)
            decode(payload)
        except (codec.EnvelopeError, UnicodeDecodeError):
            pass


def test_questions_and_answers_round_trip() -> None:
    query = NodeQuery("app", "connections", channel="room/é", peer_id="bob", limit=5)
    payload = codec.encode_question("node-1", query, b"node-1:3")
    assert codec.origin_node(payload) == (codec.QUESTION, "node-1")
    assert codec.decode_question(payload) == (query, b"node-1:3")
    assert codec.tally_of(payload) == b"node-1:3"
    answer = NodeAnswer(
        "node-2",
        connections=(ConnectionInfo("bob", ("room", "a/*"), "10.0.0.1", 1.5, "node-2", 3, 4),),
        channels=(ChannelInfo("room", 2, 0.25),),
        connection_count=1,
        channel_count=1,
    )
    reply = codec.encode_answer("node-2", b"node-1:3", answer)
    assert codec.decode_answer(reply) == (b"node-1:3", answer)
    assert codec.tally_of(reply) is None


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x93\x01\x02\x03"])
def test_a_garbled_question_or_answer_is_an_envelope_error(body: bytes) -> None:
    parts = [bytes((codec.QUESTION,))]
    codec._put(parts, b"node-1")
    codec._put(parts, body)
    codec._put(parts, b"t")
    with pytest.raises(codec.EnvelopeError):
        codec.decode_question(b"".join(parts))
    parts = [bytes((codec.ANSWER,))]
    codec._put(parts, b"node-1")
    codec._put(parts, b"t")
    codec._put(parts, body)
    with pytest.raises(codec.EnvelopeError):
        codec.decode_answer(b"".join(parts))


def test_every_envelope_kind_has_its_own_byte() -> None:
    """Two kinds sharing a byte make one of them undecodable (history's and lifecycle events'
    envelopes once both took "H")."""
    kinds = {
        name: value
        for name, value in vars(codec).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, int)
    }
    assert {"PUBLICATION", "RECORDED", "CHANNEL_EVENT", "QUESTION", "ANSWER"} <= set(kinds)
    assert len(set(kinds.values())) == len(kinds), kinds
