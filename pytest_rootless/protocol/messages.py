"""Every message of every channel: its kind, named once, and the checks of what it holds.

Every channel carries :mod:`.framing` frames (one JSON object with a ``"kind"``); over a
SOCK_SEQPACKET socket one frame a packet, fds alongside (:func:`.framing.send_packet`).
Each channel has its own set of kinds below, and a word means one thing wherever it is
used: a kind shared by two channels (``setup-error``, ``coverage``, ``ready``,
``failed``) is the same message on both.

The checks are for what comes from a container (data, and nothing it says is trusted):
each takes a decoded frame, returns what the host may use, bounded, or raises
:class:`.framing.ProtocolError`.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum, unique
from typing import Any, Final

from .framing import Message, ProtocolError


@unique
class Result(StrEnum):
    """The result channel (a pipe): a container's init and test process to the host, and
    the builder's word on how a prepared init ended. The host reads it to its end (see
    runtime.launch._collect and plugin.host_container)."""

    #: init, test process: the kernel steps it took (``stage``, ``lines``)
    TRACE = "trace"
    #: any process after fork that failed: ``stage``, ``message``, ``type``, ``errno``,
    #: ``call``, ``traceback``, ``trace`` (see runtime.child.leave)
    SETUP_ERROR = "setup-error"
    #: a live container's init: the container is built, requests are served
    READY = "ready"
    #: init, once it has its test: how long building the container took, from the clone
    #: (``seconds``; see :func:`checked_seconds`)
    BUILT = "built"
    #: the test process, isolated, about to run pytest's protocol: ``at``, its
    #: CLOCK_MONOTONIC (one clock for every namespace: no time namespace is made)
    RUNNING = "running"
    #: the test process: a report (``data``), which the host acknowledges on the ack pipe
    REPORT = "report"
    #: the test process: a warning it recorded (see :func:`checked_warning`)
    WARNING = "warning"
    #: the test process: the session should stop (see :func:`checked_session_stop`)
    SESSION_STOP = "session-stop"
    #: the test process: ``pytest.exit`` (``reason``, ``returncode``)
    SESSION_EXIT = "session-exit"
    #: the test process: KeyboardInterrupt
    INTERRUPT = "interrupt"
    #: the test process: what junitxml recorded (see :func:`checked_junit`)
    JUNITXML = "junitxml"
    #: the test process: values it set in pytest's cache (see :func:`checked_cache`)
    CACHE = "cache"
    #: the test process (and a call process): lines measured (see :func:`checked_coverage`)
    COVERAGE = "coverage"
    #: the test process, last: everything is sent (``status``)
    DONE = "done"
    #: init: what the test wrote outside its scratch space (see :func:`checked_writes`)
    WRITES = "writes"
    #: init: how the test process ended (``status``, ``signal``, ``timed_out``)
    EXIT = "exit"
    #: the builder: how a prepared init ended (``status``, ``signal``)
    INIT_EXIT = "init-exit"


@unique
class Call(StrEnum):
    """A live container's call channel (a stream socket): its call process to the host.
    The job goes down as bytes (a pickled call), not as frames."""

    #: the call returned: ``encoding``, ``value`` (see protocol.values)
    RESULT = "result"
    #: the call raised: ``error`` (see protocol.errors)
    ERROR = "error"
    #: the lines the call ran
    COVERAGE = "coverage"
    #: init's reader of the upper layers: ``changes`` (``{path: one of CHANGE_KINDS}``)
    CHANGES = "changes"
    #: the process failed before or around its job
    SETUP_ERROR = "setup-error"


@unique
class Live(StrEnum):
    """A live container's control channel (SOCK_SEQPACKET): the host and the container's
    init, and the relay that cloned it."""

    #: host: start a call process (``id``); the process's end of its channel alongside
    CALL = "call"
    #: host: start init's reader of the upper layers (``id``); its channel alongside
    READ_CHANGES = "read-changes"
    #: host: SIGKILL the process started for ``id``
    KILL = "kill"
    #: init: the process started for ``id`` ended (``status``, ``signal``)
    EXITED = "exited"
    #: the relay: the host pid of the init it cloned (``pid``)
    INIT_PID = "init-pid"


@unique
class Zygote(StrEnum):
    """The zygote's control channel (SOCK_SEQPACKET): the host and the zygote."""

    #: host: build the container for ``key`` (``spec``)
    PREPARE = "prepare"
    #: host: hand a test (``job``; ``spec`` if none was prepared) to the init prepared for
    #: ``key``; its result, crash and ack fds alongside
    START = "start"
    #: zygote: the test was handed over (``pid``; ``built``: the seconds its container
    #: took to build); a pidfd of the init alongside
    STARTED = "started"
    #: zygote: the container could not be built
    SETUP_ERROR = "setup-error"


@unique
class Builder(StrEnum):
    """The builder's channels (SOCK_SEQPACKET): the host and the builder (``ready``,
    ``connect``), and each zygote and the builder (the rest)."""

    #: builder: it runs, in its user namespace (to the host); for a zygote: container
    #: ``id`` is built (in ``built`` seconds), its init is ``pid``; a pidfd of that init
    #: and fds of its namespaces alongside (see runtime.child.ahead.namespaces)
    READY = "ready"
    #: host: serve a zygote; the builder's end of their channel alongside
    CONNECT = "connect"
    #: zygote: clone an init that builds a container (``spec``), which ``id`` names
    MAKE = "make"
    #: builder: building container ``id`` failed (init's frame, with ``id``)
    SETUP_ERROR = "setup-error"
    #: zygote: container ``id``'s test process is ``pid`` (in its PID namespace) and has
    #: its test; the test's result channel alongside, for init
    TEST = "test"
    #: zygote: no test comes for container ``id``; its init is killed
    DROP = "drop"


@unique
class Prepared(StrEnum):
    """A prepared container's channels (SOCK_SEQPACKET): its init and the builder that
    cloned it; its test process and the zygote that forked it."""

    #: init: the container is built (in ``built`` seconds); fds of its namespaces alongside
    READY = "ready"
    #: init: building the container failed
    SETUP_ERROR = "setup-error"
    #: builder, to init: the test process is ``pid`` and runs; its result channel alongside
    TEST = "test"
    #: zygote, to the test process: the test (``job``); its result, crash and ack fds
    JOB = "job"


@unique
class Holder(StrEnum):
    """A network holder's control channel (SOCK_SEQPACKET): the host and the holder."""

    #: holder: the network is up (``trace``); an fd of its user namespace alongside
    NETWORK_UP = "network-up"
    #: host: plug in member ``index``; its end of the member channel alongside (no reply)
    MEMBER = "member"
    #: host: set member ``index``'s link on the bridge ``up`` or down
    LINK = "link"
    #: holder: the link was set (``trace``)
    LINKED = "linked"
    #: holder: the request failed (``message``, ``trace``)
    FAILED = "failed"
    #: the holder process failed
    SETUP_ERROR = "setup-error"


@unique
class Member(StrEnum):
    """A member channel (SOCK_SEQPACKET): a container's init on a network and the holder."""

    #: init: plug me in; an fd of its network namespace alongside
    JOIN = "join"
    #: holder: plugged in (``trace``)
    JOINED = "joined"
    #: holder: plugging in failed (``message``, ``trace``)
    FAILED = "failed"


@unique
class Doctor(StrEnum):
    """The doctor's trial pipe: a trial's child process to the doctor."""

    #: how the trial went: ``ok``, ``call``, ``errno``, ``message``
    TRIAL = "trial"


#: Every channel's kinds.
CHANNELS: Final = (Result, Call, Live, Zygote, Prepared, Holder, Member, Doctor)


# --- checks ---------------------------------------------------------------------------------

#: What a writes frame (and a call's ``changes()``) says of a path.
CHANGE_KINDS: Final = ("added", "modified", "deleted")
#: Paths kept per test in the writes report (a test can write millions).
MAX_WRITES: Final = 1000
#: Longest text kept of a warning's fields, and of a session-stop's reason.
MAX_WARNING_TEXT: Final = 64 * 1024
#: Values per junitxml frame (attributes and suite properties each).
MAX_JUNIT_RECORDS: Final = 1000
#: Values a container may set in pytest's cache per test.
MAX_CACHE_VALUES: Final = 1000
#: The attributes of the session a test may set to stop it.
SESSION_STOPS: Final = ("shouldstop", "shouldfail")


def checked_seconds(message: Message, key: str) -> float:
    """A time or duration a container reports for ``--rootless-stats``: a finite number."""
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{message['kind']}: {key} is not a number")
    return float(value)


def checked_writes(message: Message) -> dict[str, str]:
    """A writes frame's ``{path: change}``, at most MAX_WRITES paths and a line saying how
    many more."""
    changes = message.get("changes")
    if not isinstance(changes, dict) or not all(
        isinstance(k, str) and v in CHANGE_KINDS for k, v in changes.items()
    ):
        raise ProtocolError("a writes frame is malformed")
    kept = dict(list(changes.items())[:MAX_WRITES])
    if len(changes) > MAX_WRITES:
        kept[f"... and {len(changes) - MAX_WRITES} more"] = "added"
    return kept


def checked_warning(message: Message) -> Message:
    """A warning frame's ``message``, ``category``, ``module``, ``filename``, ``line``
    (texts, cut at MAX_WARNING_TEXT) and ``lineno``; the category is a name. ``line`` is
    the source line the container saw ("" if none, or not sent): the host shows it, and
    never reads the file a container names."""
    fields = ("message", "category", "module", "filename", "line")
    message = {"line": "", **message}
    if not all(isinstance(message.get(key), str) for key in fields):
        raise ProtocolError("a warning frame is malformed")
    if not isinstance(message.get("lineno"), int):
        raise ProtocolError("a warning frame is malformed")
    if not message["category"].isidentifier():
        raise ProtocolError("a warning category is not a name")
    return {key: message[key][:MAX_WARNING_TEXT] for key in fields} | {"lineno": message["lineno"]}


def checked_session_stop(message: Message) -> tuple[str, str]:
    """A session-stop frame's attribute (one of SESSION_STOPS) and reason (cut at
    MAX_WARNING_TEXT)."""
    name, reason = message.get("attribute"), message.get("reason")
    if name not in SESSION_STOPS or not isinstance(reason, str):
        raise ProtocolError("a session-stop frame is malformed")
    return str(name), reason[:MAX_WARNING_TEXT]


def checked_junit(message: Message) -> dict[str, list[tuple[str, str]]]:
    """A junitxml frame's ``attributes`` and ``properties``: (name, text) pairs, at most
    MAX_JUNIT_RECORDS of each."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for key in ("attributes", "properties"):
        value = message.get(key)
        if not (
            isinstance(value, list)
            and len(value) <= MAX_JUNIT_RECORDS
            and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in value
            )
        ):
            raise ProtocolError("a junitxml frame is malformed")
        pairs[key] = [(name, text) for name, text in value]
    for name, _ in pairs["attributes"]:
        # an attribute's name is written into the XML as it is (a property's is a value)
        if not XML_NAME.fullmatch(name):
            raise ProtocolError(f"a junitxml attribute name is not an XML name: {name!r:.200}")
    return pairs


_NAME_START = (
    ":A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd"
    "\U00010000-\U000effff"
)
#: The Name production of XML 1.0 (fifth edition, section 2.3).
XML_NAME: Final = re.compile(
    f"[{_NAME_START}][{_NAME_START}\\-.0-9\xb7\u0300-\u036f\u203f-\u2040]*"
)


def checked_cache(message: Message) -> dict[str, Any]:
    """A cache frame's ``{key: value}``, at most MAX_CACHE_VALUES values, each key one
    that stays in the cache directory (see :func:`cache_key_problem`)."""
    values = message.get("values")
    if not (
        isinstance(values, dict)
        and len(values) <= MAX_CACHE_VALUES
        and all(isinstance(key, str) for key in values)
    ):
        raise ProtocolError("a cache frame is malformed")
    for key in values:
        problem = cache_key_problem(key)
        if problem is not None:
            raise ProtocolError(f"a cache key {key!r:.200} {problem}")
    return values


def cache_key_problem(key: str) -> str | None:
    """Why ``key`` may not name a value of pytest's cache, or None: a key is a relative
    path of ``/``-separated names inside the cache directory. pytest 8 joins a key to
    the directory unchecked (an absolute key, or one with ``..``, names any file); the
    host checks every key itself, for every pytest (and where the key's path resolves,
    see plugin.reports._apply_cache)."""
    if not key or len(key) > MAX_CACHE_KEY:
        return "is empty or too long"
    if "\0" in key or "\\" in key:
        return "holds a NUL or a backslash"
    if key.startswith("/"):
        return "is an absolute path: it would leave the cache directory"
    if ".." in key.split("/"):
        return "has a '..' component: it could leave the cache directory"
    return None


#: Longest cache key a container may set.
MAX_CACHE_KEY: Final = 4096


def checked_coverage(message: Message) -> tuple[bool, dict[str, dict[str, list[Any]]]]:
    """A coverage frame: whether it holds arcs, and under each dynamic context
    ``{path: [line, ...]}`` or ``{path: [(from, to), ...]}``."""
    arcs, contexts = message.get("arcs"), message.get("contexts")
    if not isinstance(arcs, bool) or not isinstance(contexts, dict):
        raise ProtocolError("a coverage frame is malformed")
    return arcs, {context: _checked_files(files, arcs) for context, files in contexts.items()}


def _checked_files(files: object, arcs: bool) -> dict[str, list[Any]]:
    if not isinstance(files, dict):
        raise ProtocolError("a coverage frame is malformed")
    size = 2 if arcs else 1
    checked: dict[str, list[Any]] = {}
    for path, entries in files.items():
        if not isinstance(path, str) or not isinstance(entries, list):
            raise ProtocolError("a coverage frame is malformed")
        for entry in entries:
            numbers = entry if arcs else [entry]
            if not (
                isinstance(numbers, list)
                and len(numbers) == size
                and all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
            ):
                raise ProtocolError("a coverage frame is malformed")
        checked[path] = [tuple(e) for e in entries] if arcs else entries
    return checked


def checked_trial(message: Message) -> tuple[bool, str | None, int | None, str]:
    """A trial frame's ``ok``, ``call``, ``errno`` and ``message``."""
    ok, call, errno, text = (message.get(key) for key in ("ok", "call", "errno", "message"))
    if not (
        message.get("kind") == Doctor.TRIAL
        and isinstance(ok, bool)
        and isinstance(call, str | None)
        and (errno is None or (isinstance(errno, int) and not isinstance(errno, bool)))
        and isinstance(text, str)
    ):
        raise ProtocolError("a trial frame is malformed")
    return ok, call, errno, text
