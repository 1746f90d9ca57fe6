"""Unit tests for message framing between clone and template."""

from __future__ import annotations

import struct

import pytest

from pytest_cowfork import wire


def test_a_frame_round_trips_through_the_reader() -> None:
    payload = {"nodeid": "test_x.py::test_a", "sections": [["a", "b"]], "n": 3}
    reader = wire.FrameReader()

    assert list(reader.feed(wire.encode(wire.Kind.REPORT, payload))) == [
        (wire.Kind.REPORT, payload)
    ]
    assert reader.pending == 0


def test_frames_split_at_every_byte_are_reassembled() -> None:
    stream = wire.encode(wire.Kind.REPORT, {"text": "é" * 50}) + wire.encode(
        wire.Kind.DONE, {}
    )
    reader = wire.FrameReader()

    messages = [message for byte in stream for message in reader.feed(bytes([byte]))]

    assert messages == [(wire.Kind.REPORT, {"text": "é" * 50}), (wire.Kind.DONE, {})]


def test_several_frames_in_one_chunk_all_come_out_in_order() -> None:
    stream = b"".join(wire.encode(wire.Kind.REPORT, {"i": i}) for i in range(5))

    messages = list(wire.FrameReader().feed(stream))

    assert [payload["i"] for _, payload in messages] == [0, 1, 2, 3, 4]


def test_an_incomplete_frame_waits_for_the_rest() -> None:
    frame = wire.encode(wire.Kind.EXIT, {"msg": "bye", "returncode": 3})
    reader = wire.FrameReader()

    assert list(reader.feed(frame[:-1])) == []
    assert reader.pending == len(frame) - 1
    assert list(reader.feed(frame[-1:])) == [
        (wire.Kind.EXIT, {"msg": "bye", "returncode": 3})
    ]


def test_values_json_cannot_hold_are_sent_as_their_repr() -> None:
    reader = wire.FrameReader()

    [(_, payload)] = reader.feed(wire.encode(wire.Kind.REPORT, {"value": {1, 2}}))

    assert payload == {"value": "{1, 2}"}


def test_lone_surrogates_from_undecodable_output_survive() -> None:
    text = b"caf\xe9".decode("utf-8", "surrogateescape")
    reader = wire.FrameReader()

    [(_, payload)] = reader.feed(wire.encode(wire.Kind.REPORT, {"out": text}))

    assert payload == {"out": text}


def test_an_unknown_kind_is_refused() -> None:
    frame = struct.pack(">IB", 2, 99) + b"{}"

    with pytest.raises(wire.WireError, match="unknown message kind 99"):
        list(wire.FrameReader().feed(frame))


def test_a_length_over_the_limit_is_refused_before_buffering() -> None:
    header = struct.pack(">IB", wire.MAX_PAYLOAD + 1, wire.Kind.REPORT)

    with pytest.raises(wire.WireError, match="over the limit"):
        list(wire.FrameReader().feed(header))


def test_a_payload_that_is_not_json_is_refused() -> None:
    frame = struct.pack(">IB", 3, wire.Kind.REPORT) + b"{{{"

    with pytest.raises(wire.WireError, match="undecodable REPORT"):
        list(wire.FrameReader().feed(frame))


def test_encoding_ignores_a_replaced_json_dumps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test that clobbers json.dumps must not corrupt its own report."""
    import json

    monkeypatch.setattr(json, "dumps", lambda *args, **kwargs: "garbage")

    [(_, payload)] = wire.FrameReader().feed(wire.encode(wire.Kind.DONE, {"a": 1}))

    assert payload == {"a": 1}
