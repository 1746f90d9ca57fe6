"""Frame messages between a clone and its template over an inherited pipe.

Both processes use this module: a clone encodes, the template decodes. It
never forks and never touches pytest state, so it can be tested alone.

A frame is a 5-byte header (payload length as a 4-byte big-endian integer,
then one byte for the kind) followed by a UTF-8 JSON payload.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterator
from typing import Any

# Bound now: a test may replace ``json.dumps`` or ``json.loads`` and must not
# be able to change how its own result travels.
_encoder = json.JSONEncoder(default=repr, ensure_ascii=False, separators=(",", ":"))
_encode = _encoder.encode
_decode = json.JSONDecoder().decode
_header = struct.Struct(">IB")

HEADER_SIZE = _header.size
#: Larger frames are refused: no honest report comes near it, and a corrupt
#: length must not make the template buffer gigabytes.
MAX_PAYLOAD = 256 * 1024 * 1024


class Kind(enum.IntEnum):
    """What a frame carries."""

    #: A serialized TestReport, as pytest_report_to_serializable made it.
    REPORT = 1
    #: The clone finished its protocol; every report was sent.
    DONE = 2
    #: The test called pytest.exit(): ``{"msg": str, "returncode": int|None}``.
    EXIT = 3
    #: The test raised KeyboardInterrupt: ``{"msg": str}``.
    INTERRUPT = 4
    #: The clone's own machinery failed: ``{"traceback": str}``.
    ERROR = 5
    #: A warning the test raised: ``{"message", "category", "filename",
    #: "lineno"}``, the category as ``module:qualname``.
    WARNING = 6
    #: A debugger is about to start: the clone waits for the terminal.
    TERMINAL = 7
    #: All coverage.py measured in the clone so far: ``{"data": str}``,
    #: ``CoverageData.dumps()`` in base64; or ``{"problem": str}`` if the
    #: clone could not measure.
    COVERAGE = 8
    #: What pytest-rerunfailures' hooks recorded on the item during the
    #: attempt, for its loop in the template (see :mod:`reruns`).
    RERUN_STATE = 9


class WireError(Exception):
    """The byte stream from a clone is not a valid sequence of frames."""


def encode(kind: Kind, payload: Any) -> bytes:
    """Return one frame holding ``payload`` as JSON."""
    body = _encode(payload).encode("utf-8", "surrogatepass")
    if len(body) > MAX_PAYLOAD:
        raise WireError(f"a {kind.name} message of {len(body)} bytes is too large")
    return _header.pack(len(body), kind) + body


class FrameReader:
    """Turn bytes read from a pipe, in chunks of any size, into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[Kind, Any]]:
        """Add ``data`` and yield every message it completes."""
        self._buffer += data
        while len(self._buffer) >= HEADER_SIZE:
            size, kind_byte = _header.unpack_from(self._buffer)
            if size > MAX_PAYLOAD:
                raise WireError(f"frame announces {size} bytes, over the limit")
            try:
                kind = Kind(kind_byte)
            except ValueError:
                raise WireError(f"unknown message kind {kind_byte}") from None
            end = HEADER_SIZE + size
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[HEADER_SIZE:end])
            del self._buffer[:end]
            try:
                payload = _decode(body.decode("utf-8", "surrogatepass"))
            except ValueError as exc:
                raise WireError(f"undecodable {kind.name} message: {exc}") from None
            yield kind, payload

    @property
    def pending(self) -> int:
        """Return how many bytes of an unfinished frame are buffered."""
        return len(self._buffer)
