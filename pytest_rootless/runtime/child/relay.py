"""The relay: a single-threaded copy of a multi-threaded pytest that clones a container's
init (on a named network, from inside the network's user namespace)."""

from __future__ import annotations

import os
import signal
import socket
from typing import NoReturn

from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from ...protocol.messages import Live
from ..spec import CLONE_FLAGS, ContainerSpec, Payload
from . import hoststate
from .init import container_main
from .leave import EXIT_SETUP_FAILED, _parent_gone, run_then_exit


def relay_main(
    spec: ContainerSpec, result_fd: int, crash_fd: int, payload: Payload, cloned_at: float
) -> NoReturn:
    """Entry point of a single-threaded copy of a multi-threaded pytest: clone the
    container's init from here (safe: no other thread can hold a malloc lock), wait for
    it and exit with its status. Never returns."""

    def relay() -> int:
        if spec.control_fd is None:  # see _init
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
        if _parent_gone(result_fd):
            return EXIT_SETUP_FAILED
        hoststate.save_and_name(b"rootless-relay")  # pytest's, for the test process
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if spec.network is not None:
            # The container's namespaces become children of the network's user
            # namespace, over which the network's holder has its capabilities (_network).
            label = f"<user namespace of network {spec.network.network!r}>"
            sc.setns(spec.network.userns_fd, NS.NEWUSER, label)
        pid = sc.clone(CLONE_FLAGS)
        if pid == 0:
            container_main(spec, result_fd, crash_fd, payload, cloned_at)
        if spec.control_fd is not None:  # the host's Container.pid is init's, not ours
            with socket.socket(fileno=os.dup(spec.control_fd)) as control:
                framing.send_packet(control, {"kind": Live.INIT_PID, "pid": pid})
        os.close(result_fd)
        _, wait_status = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        return 128 - status if status < 0 else status

    run_then_exit("init", result_fd, relay)
