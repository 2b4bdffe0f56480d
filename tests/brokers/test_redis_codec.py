"""The envelope between nodes: lossless round trips, and foreign payloads refused cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.brokers import redis_codec as codec
from hubbub.core.broker import Direct, PresenceDelta, PresenceEntry, Publication

texts = st.text(min_size=1, max_size=40)
raw = st.binary(max_size=200)
optional_raw = st.none() | raw
entries = st.lists(st.builds(PresenceEntry, texts, optional_raw), max_size=3).map(tuple)


@given(st.builds(Publication, texts, texts, texts, raw, optional_raw, st.none() | texts))
def test_publications_round_trip(publication: Publication) -> None:
    payload = codec.encode_publication("node-1", publication)
    assert codec.origin_node(payload) == (codec.PUBLICATION, "node-1")
    assert codec.decode_publication(payload) == publication


@given(st.builds(Direct, texts, texts, texts, raw, optional_raw, st.none() | texts))
def test_directs_round_trip(direct: Direct) -> None:
    assert codec.decode_direct(codec.encode_direct("n", direct)) == direct


@given(st.builds(PresenceDelta, texts, texts, texts, entries, entries))
def test_presence_deltas_round_trip(delta: PresenceDelta) -> None:
    assert codec.decode_presence(codec.encode_presence("n", delta)) == delta


def test_disconnect_round_trips() -> None:
    payload = codec.encode_disconnect("n", "app", "bob", 4020, "disconnected by admin")
    assert codec.decode_disconnect(payload) == ("app", "bob", 4020, "disconnected by admin")


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
    for decode in (codec.decode_publication, codec.decode_direct, codec.decode_presence):
        try:
            codec.origin_node(payload)
            decode(payload)
        except (codec.EnvelopeError, UnicodeDecodeError):
            pass
