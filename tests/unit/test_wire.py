"""The frame codec: JSON only, bounded, incremental."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from pytest_rootless.protocol import framing


def test_round_trip_in_pieces() -> None:
    messages = [{"kind": "a", "n": 1}, {"kind": "b", "text": "é" * 1000}]
    data = b"".join(framing.encode(m) for m in messages)
    decoder = framing.Decoder()
    out = []
    for i in range(0, len(data), 7):
        out += decoder.feed(data[i : i + 7])
    assert out == messages
    assert decoder.pending == 0


def test_keys_json_cannot_hold_become_text() -> None:
    (decoded,) = framing.Decoder().feed(framing.encode({"kind": "x", "m": {(0, 1): 0.5}}))
    assert decoded["m"] == {"(0, 1)": 0.5}


def test_values_json_cannot_hold_are_sent_as_text() -> None:
    message = {"kind": "x", "path": Path("/a"), "set": {1}, "obj": object()}
    (decoded,) = framing.Decoder().feed(framing.encode(message))
    assert decoded["path"] == "/a"
    assert decoded["set"] == [1]
    assert decoded["obj"].startswith("<object object")


def decode_error(data: bytes) -> str:
    decoder = framing.Decoder()
    assert decoder.feed(data) == []
    assert decoder.error is not None
    return str(decoder.error)


def test_oversized_claim_is_refused_before_allocation() -> None:
    header = (4 * 1024**3 - 1).to_bytes(4, "big")
    assert "claims" in decode_error(header)


def test_frames_before_a_bad_one_still_arrive() -> None:
    decoder = framing.Decoder()
    good = framing.encode({"kind": "a"})
    assert decoder.feed(good + b"\x00\x00\x00\x02no" + good) == [{"kind": "a"}]
    assert decoder.error is not None
    assert decoder.feed(good) == []  # nothing after the error


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"no": "kind"}', b"\xff\xfe", pickle.dumps({"kind": "x"})],
)
def test_garbage_is_a_protocol_error(body: bytes) -> None:
    decode_error(len(body).to_bytes(4, "big") + body)


@pytest.mark.parametrize(
    "body", [b"9" * 5000, b"[" * 100_000 + b"]" * 100_000], ids=["huge-int", "deep-nesting"]
)
def test_json_that_breaks_the_parser_is_a_protocol_error(body: bytes) -> None:
    assert "not JSON" in decode_error(len(body).to_bytes(4, "big") + body)


def leave_trace(path: str) -> dict[str, str]:
    """What loading the pickle below calls: a file created, and a valid message returned
    (so a decoder that loaded it would not even fail for want of a 'kind')."""
    Path(path).touch()
    return {"kind": "pickled"}


class LeavesATrace:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (leave_trace, (str(self.path),))


def test_a_pickle_is_never_loaded(tmp_path: Path) -> None:
    trace = tmp_path / "loaded"
    body = pickle.dumps(LeavesATrace(trace))
    pickle.loads(body)  # the payload works: loading it leaves the trace
    assert trace.exists()
    trace.unlink()
    decoder = framing.Decoder()
    messages = decoder.feed(len(body).to_bytes(4, "big") + body)
    assert not trace.exists(), "the decoder loaded the pickle"
    assert messages == []
    assert decoder.error is not None


def test_send_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        framing.send(w, {"kind": "report", "data": "x" * 30_000})
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
    assert framing.Decoder().feed(data) == [{"kind": "report", "data": "x" * 30_000}]


def test_a_test_that_patches_os_write_and_json_does_not_reach_the_frames() -> None:
    """A test may patch these for its whole duration while its reports are sent."""
    from unittest import mock

    r, w = os.pipe()
    try:
        with (
            mock.patch("os.write", return_value=0),
            mock.patch("json.dumps", side_effect=RuntimeError("patched")),
            mock.patch("json.JSONEncoder", side_effect=RuntimeError("patched")),
        ):
            framing.send(w, {"kind": "report", "n": 1})
        assert framing.Decoder().feed(os.read(r, 4096)) == [{"kind": "report", "n": 1}]
    finally:
        os.close(r)
        os.close(w)


def test_a_write_that_makes_no_progress_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def writes_nothing(fd: int, data: object) -> int:
        calls.append(fd)
        return 0

    monkeypatch.setattr(framing, "_write", writes_nothing)
    with pytest.raises(OSError, match=r"write\(7\) returned 0 with 5 of 5 bytes still to write"):
        framing.write_all(7, b"hello")
    assert calls == [7]
