"""The server's end of a worker socket reassembles frames however the bytes arrive."""

from __future__ import annotations

import asyncio

import pytest

from tabpy.runtime.pool import Channel
from tabpy.runtime.protocol import FrameType, Outcome, pack_header


def _frame(kind: FrameType, code: int, meta: bytes, attachment: bytes, body: bytes) -> bytes:
    return pack_header(kind, code, len(meta), len(attachment), len(body)) + meta + attachment + body


class _Recording(Channel):
    """A channel that records what it would deliver."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[tuple[int, int, bytes, bytes]] = []

    def _deliver(self, frame_type: int, code: int, meta: object, body: object) -> None:
        assert isinstance(meta, (bytes, bytearray)) and isinstance(body, (bytes, bytearray))
        self.delivered.append((frame_type, code, bytes(meta), bytes(body)))


FRAMES = [
    (FrameType.REPLY, Outcome.OK, b"", b"", b"[1, 2, 3]"),
    (FrameType.REQUEST, 0, b'{"name": "add"}', b"", b""),
    (FrameType.REPLY, Outcome.OK, b"", b"", bytes(range(256)) * 1200),  # beyond the inbox
    (FrameType.REPLY, Outcome.FAILED, b'{"info": "x"}', b"att", b"tail"),
    (FrameType.READY, 0, b"", b"", b""),
]


@pytest.mark.parametrize("step", [1, 5, 22, 23, 1000, 70_000, 10**7])
def test_frames_arrive_whole_whatever_the_read_sizes(step: int) -> None:
    stream = b"".join(_frame(*frame) for frame in FRAMES)

    async def scenario() -> list[tuple[int, int, bytes, bytes]]:
        channel = _Recording()
        at = 0
        while at < len(stream):
            buffer = channel.get_buffer(-1)
            assert len(buffer) > 0
            n = min(len(buffer), step, len(stream) - at)
            buffer[:n] = stream[at : at + n]
            channel.buffer_updated(n)
            at += n
        return channel.delivered

    delivered = asyncio.run(scenario())
    assert delivered == [(int(t), int(c), m, b) for t, c, m, _, b in FRAMES]
