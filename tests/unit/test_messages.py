"""The messages of every channel: named once, one meaning per word, checked as data."""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from enum import StrEnum
from typing import Any

import pytest

from pytest_rootless.protocol import framing, messages
from pytest_rootless.protocol.framing import ProtocolError
from pytest_rootless.protocol.messages import (
    CHANNELS,
    Call,
    Doctor,
    Holder,
    Live,
    Member,
    Prepared,
    Result,
    Zygote,
)

# --- names ----------------------------------------------------------------------------------

#: The words more than one channel uses, each for the same message on all of them.
SHARED = {
    "setup-error": {Result, Call, Zygote, Prepared, Holder},  # a process after fork failed
    "coverage": {Result, Call},  # lines a test or call process ran
    "ready": {Result, Prepared},  # a container's init: the container is built
    "failed": {Holder, Member},  # the holder could not do what it was asked
}


def test_a_word_used_by_two_channels_is_one_message() -> None:
    users: dict[str, set[type[StrEnum]]] = defaultdict(set)
    for channel in CHANNELS:
        for kind in channel:
            users[kind.value].add(channel)
    shared = {word: channels for word, channels in users.items() if len(channels) > 1}
    assert shared == SHARED


@pytest.mark.parametrize(
    ("word", "channel"),
    [("done", Result), ("error", Call), ("linked", Holder), ("network-up", Holder)],
)
def test_the_words_that_had_two_meanings_have_one(word: str, channel: type[StrEnum]) -> None:
    assert [c for c in CHANNELS if word in {k.value for k in c}] == [channel]


def test_every_kind_is_a_plain_string_on_the_wire() -> None:
    for channel in CHANNELS:
        for kind in channel:
            (decoded,) = framing.Decoder().feed(framing.encode({"kind": kind}))
            assert type(decoded["kind"]) is str
            assert decoded["kind"] == kind.value
            assert channel(decoded["kind"]) is kind


# --- frames round trip, per channel ---------------------------------------------------------

#: One message of each kind a host-side reader checks, as its sender makes it.
RESULT_FRAMES: list[tuple[framing.Message, Any, Any]] = [
    (
        {"kind": Result.WRITES, "changes": {"/etc/x": "added", "/usr/y": "deleted"}},
        messages.checked_writes,
        {"/etc/x": "added", "/usr/y": "deleted"},
    ),
    (
        {
            "kind": Result.WARNING,
            "message": "careful",
            "category": "UserWarning",
            "module": "builtins",
            "filename": "test_a.py",
            "lineno": 3,
            "line": "    warn()\n",
        },
        messages.checked_warning,
        {
            "message": "careful",
            "category": "UserWarning",
            "module": "builtins",
            "filename": "test_a.py",
            "lineno": 3,
            "line": "    warn()\n",
        },
    ),
    (
        {"kind": Result.SESSION_STOP, "attribute": "shouldfail", "reason": "stop"},
        messages.checked_session_stop,
        ("shouldfail", "stop"),
    ),
    (
        {"kind": Result.JUNITXML, "attributes": [["a", "1"]], "properties": []},
        messages.checked_junit,
        {"attributes": [("a", "1")], "properties": []},
    ),
    (
        {"kind": Result.CACHE, "values": {"k/v": [1, {"x": None}]}},
        messages.checked_cache,
        {"k/v": [1, {"x": None}]},
    ),
    (
        {"kind": Result.COVERAGE, "arcs": True, "contexts": {"": {"/a.py": [(1, 2), (-1, 1)]}}},
        messages.checked_coverage,
        (True, {"": {"/a.py": [(1, 2), (-1, 1)]}}),
    ),
    (
        {"kind": Doctor.TRIAL, "ok": False, "call": "unshare", "errno": 1, "message": "no"},
        messages.checked_trial,
        (False, "unshare", 1, "no"),
    ),
]


@pytest.mark.parametrize(("message", "check", "expected"), RESULT_FRAMES)
def test_a_frame_round_trip_reads_back_as_sent(
    message: framing.Message, check: Any, expected: Any
) -> None:
    (decoded,) = framing.Decoder().feed(framing.encode(message))
    assert check(decoded) == expected


#: A packet of each SOCK_SEQPACKET channel, with the fds it carries.
PACKETS: list[tuple[framing.Message, int]] = [
    ({"kind": Live.CALL, "id": 1}, 1),
    ({"kind": Live.READ_CHANGES, "id": 2}, 1),
    ({"kind": Live.KILL, "id": 1}, 0),
    ({"kind": Live.EXITED, "id": 1, "status": 137, "signal": 9}, 0),
    ({"kind": Live.INIT_PID, "pid": 4242}, 0),
    ({"kind": Zygote.PREPARE, "key": "k", "spec": {"hostname": "h"}}, 0),
    ({"kind": Zygote.START, "key": "k", "job": {"item": 0, "fds": [5, 6, 7]}}, 3),
    ({"kind": Zygote.STARTED, "pid": 4242}, 1),
    ({"kind": Prepared.READY}, 0),
    ({"kind": Prepared.JOB, "job": {"item": 0, "fds": [5, 6, 7]}}, 3),
    ({"kind": Holder.NETWORK_UP, "trace": ["unshare(...)"]}, 1),
    ({"kind": Holder.MEMBER, "index": 2}, 1),
    ({"kind": Holder.LINK, "index": 2, "up": False}, 0),
    ({"kind": Holder.LINKED, "trace": []}, 0),
    ({"kind": Holder.FAILED, "message": "no such device", "trace": []}, 0),
    ({"kind": Member.JOIN}, 1),
    ({"kind": Member.JOINED, "trace": []}, 0),
]


@pytest.mark.parametrize(("message", "nfds"), PACKETS, ids=[m["kind"] for m, _ in PACKETS])
def test_a_packet_round_trip_carries_its_frame_and_fds(message: framing.Message, nfds: int) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sent = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(nfds)]
    try:
        framing.send_packet(ours, message, sent, flags=socket.MSG_DONTWAIT)
        data, fds, _, _ = socket.recv_fds(theirs, 1 << 16, 4, socket.MSG_CMSG_CLOEXEC)
        for fd in fds:
            os.close(fd)
        assert framing.decode_packet(data) == message
        assert len(fds) == nfds
    finally:
        for fd in sent:
            os.close(fd)
        ours.close()
        theirs.close()


def test_a_packet_of_two_frames_is_refused() -> None:
    data = framing.encode({"kind": Live.KILL, "id": 1}) * 2
    with pytest.raises(ProtocolError):
        framing.decode_packet(data)


# --- checks ---------------------------------------------------------------------------------


def test_writes_past_the_bound_are_counted_not_kept() -> None:
    changes = {f"/f{i:05}": "modified" for i in range(messages.MAX_WRITES + 5)}
    kept = messages.checked_writes({"kind": Result.WRITES, "changes": changes})
    assert len(kept) == messages.MAX_WRITES + 1
    assert kept["... and 5 more"] == "added"


@pytest.mark.parametrize(
    "changes",
    [None, [], {"/a": "renamed"}, {"/a": None}, {1: "added"}],
)
def test_malformed_writes_are_refused(changes: object) -> None:
    with pytest.raises(ProtocolError, match="writes frame"):
        messages.checked_writes({"kind": Result.WRITES, "changes": changes})


WARNING = {
    "kind": Result.WARNING,
    "message": "m",
    "category": "UserWarning",
    "module": "builtins",
    "filename": "f.py",
    "lineno": 1,
}


def test_a_warning_is_cut_to_its_bound() -> None:
    long = "x" * (messages.MAX_WARNING_TEXT + 10)
    checked = messages.checked_warning({**WARNING, "message": long, "extra": "dropped"})
    assert checked["message"] == "x" * messages.MAX_WARNING_TEXT
    assert "extra" not in checked
    assert "kind" not in checked


@pytest.mark.parametrize(
    "change",
    [
        {"message": 1},
        {"filename": None},
        {"lineno": "3"},
        {"line": None},
        {"category": "os.system('x')"},
        {"category": "Warning; import os"},
    ],
)
def test_malformed_warnings_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match="warning"):
        messages.checked_warning({**WARNING, **change})


def test_a_warning_carries_the_line_the_container_saw() -> None:
    """The host shows that line and never reads the file the container names."""
    assert messages.checked_warning({**WARNING, "line": "  x = 1\n"})["line"] == "  x = 1\n"
    assert messages.checked_warning(WARNING)["line"] == ""  # none sent: none shown


def test_a_warning_without_a_field_is_refused() -> None:
    with pytest.raises(ProtocolError):
        messages.checked_warning({k: v for k, v in WARNING.items() if k != "module"})


def test_a_session_stop_reason_is_cut_to_its_bound() -> None:
    reason = "r" * (messages.MAX_WARNING_TEXT + 1)
    message = {"kind": Result.SESSION_STOP, "attribute": "shouldstop", "reason": reason}
    assert messages.checked_session_stop(message) == ("shouldstop", reason[:-1])


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [("shouldstop", None), ("shouldstop", 1), ("config", "x"), ("__class__", "x"), (None, "")],
)
def test_malformed_session_stops_are_refused(attribute: object, reason: object) -> None:
    message = {"kind": Result.SESSION_STOP, "attribute": attribute, "reason": reason}
    with pytest.raises(ProtocolError, match="session-stop"):
        messages.checked_session_stop(message)


@pytest.mark.parametrize(
    "change",
    [
        {"attributes": None},
        {"properties": {"a": "b"}},
        {"attributes": [["a"]]},
        {"attributes": [["a", "b", "c"]]},
        {"attributes": [["a", 1]]},
        {"properties": [("a", "b")] * 1},  # tuples: not what JSON gives
        {"properties": [["a", "b"]] * (messages.MAX_JUNIT_RECORDS + 1)},
    ],
)
def test_malformed_junit_frames_are_refused(change: dict[str, object]) -> None:
    message = {"kind": Result.JUNITXML, "attributes": [], "properties": [], **change}
    with pytest.raises(ProtocolError, match="junitxml"):
        messages.checked_junit(message)


def test_a_junit_frame_at_its_bound_is_taken() -> None:
    pairs = [["p", "v"]] * messages.MAX_JUNIT_RECORDS
    message = {"kind": Result.JUNITXML, "attributes": [], "properties": pairs}
    assert len(messages.checked_junit(message)["properties"]) == messages.MAX_JUNIT_RECORDS


@pytest.mark.parametrize(
    "values",
    [None, [["k", 1]], {1: "v"}, {f"k{i}": i for i in range(messages.MAX_CACHE_VALUES + 1)}],
)
def test_malformed_cache_frames_are_refused(values: object) -> None:
    with pytest.raises(ProtocolError, match="cache"):
        messages.checked_cache({"kind": Result.CACHE, "values": values})


def test_lines_stay_lists_and_arcs_become_pairs() -> None:
    lines = {"kind": Result.COVERAGE, "arcs": False, "contexts": {"t": {"/a.py": [1, 2]}}}
    assert messages.checked_coverage(lines) == (False, {"t": {"/a.py": [1, 2]}})
    arcs = {"kind": Result.COVERAGE, "arcs": True, "contexts": {"t": {"/a.py": [[1, 2]]}}}
    assert messages.checked_coverage(arcs) == (True, {"t": {"/a.py": [(1, 2)]}})


@pytest.mark.parametrize(
    ("arcs", "contexts"),
    [
        (None, {}),
        (1, {}),
        (False, []),
        (False, {"t": []}),
        (False, {"t": {"/a.py": 1}}),
        (False, {"t": {"/a.py": ["1"]}}),
        (False, {"t": {"/a.py": [True]}}),
        (False, {"t": {"/a.py": [[1, 2]]}}),
        (True, {"t": {"/a.py": [1]}}),
        (True, {"t": {"/a.py": [[1, 2, 3]]}}),
        (True, {"t": {"/a.py": [[1, 2.0]]}}),
    ],
)
def test_malformed_coverage_frames_are_refused(arcs: object, contexts: object) -> None:
    with pytest.raises(ProtocolError, match="coverage"):
        messages.checked_coverage({"kind": Result.COVERAGE, "arcs": arcs, "contexts": contexts})


TRIAL = {"kind": Doctor.TRIAL, "ok": True, "call": None, "errno": None, "message": ""}


@pytest.mark.parametrize(
    "change",
    [
        {"kind": Result.DONE},
        {"ok": 1},
        {"call": 3},
        {"errno": "EPERM"},
        {"errno": True},
        {"message": None},
    ],
)
def test_malformed_trials_are_refused(change: dict[str, object]) -> None:
    assert messages.checked_trial(TRIAL) == (True, None, None, "")
    with pytest.raises(ProtocolError, match="trial"):
        messages.checked_trial({**TRIAL, **change})


@pytest.mark.parametrize(
    "key",
    ["/home/u/.bashrc", "../../x", "a/../../x", "a/..", "", "a\\..\\x", "a\0b", "x" * 5000],
)
def test_a_cache_key_that_could_leave_the_cache_is_refused(key: str) -> None:
    """For every pytest: pytest 8 joins a key to its directory unchecked."""
    with pytest.raises(ProtocolError, match="a cache key"):
        messages.checked_cache({"kind": Result.CACHE, "values": {"ok/key": 1, key: 2}})


@pytest.mark.parametrize("key", ["cache/lastfailed", "my-plugin/a.b/c", "name..with..dots"])
def test_a_cache_key_inside_the_cache_is_kept(key: str) -> None:
    assert messages.checked_cache({"kind": Result.CACHE, "values": {key: 1}}) == {key: 1}


@pytest.mark.parametrize("name", ['a="1"><injected/><x y', "1a", "-a", "a b", "a>", "", "a\n"])
def test_a_junit_attribute_name_must_be_an_xml_name(name: str) -> None:
    """junitxml writes an attribute's name as it is: anything else could inject XML."""
    message = {"kind": Result.JUNITXML, "attributes": [[name, "v"]], "properties": []}
    with pytest.raises(ProtocolError, match="not an XML name"):
        messages.checked_junit(message)


@pytest.mark.parametrize("name", ["a", "ok-name.1", ":x", "_a", "é", "a·b"])
def test_xml_names_are_kept_as_junit_attributes(name: str) -> None:
    message = {"kind": Result.JUNITXML, "attributes": [[name, "v"]], "properties": [["1 x", "v"]]}
    assert messages.checked_junit(message)["attributes"] == [(name, "v")]
