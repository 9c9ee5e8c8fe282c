"""clone(CLONE_VM|CLONE_VFORK), what the zygote makes each test process's launcher with
(runtime.child.ahead.launch_test_process): a process that runs Python in our memory while
we wait, then ends without touching what we hold."""

from __future__ import annotations

import os

from pytest_rootless.kernel import syscalls as sc


def test_it_runs_in_our_memory_and_we_wait_until_it_has_ended() -> None:
    seen: list[int] = []

    def launcher() -> int:
        seen.append(os.getpid())  # into our memory: nothing is copied
        return 0

    pid = sc.clone_vm_vfork(launcher)
    # CLONE_VFORK: we went on only once it had ended, so what it wrote is there.
    assert seen == [pid]
    assert pid != os.getpid()
    assert os.waitpid(pid, 0) == (pid, 0)


def test_its_fork_is_a_copy_of_us_and_it_leaves_our_files_open() -> None:
    read_end, write_end = os.pipe()
    spare = os.dup(write_end)
    marker = f"made by {os.getpid()}"

    def launcher() -> int:
        os.close(spare)  # in its own fd table: ours keeps it
        if os.fork() == 0:  # a copy of our memory: it knows the marker
            os.write(write_end, marker.encode())
            os._exit(0)
        return 0

    try:
        launcher_pid = sc.clone_vm_vfork(launcher)
        assert os.waitpid(launcher_pid, 0)[1] == 0
        os.close(write_end)
        os.write(spare, b"")  # EBADF had the launcher closed ours
        os.close(spare)
        assert os.read(read_end, 64) == marker.encode()
    finally:
        os.close(read_end)


def test_an_exception_in_it_ends_it_with_127_and_not_us() -> None:
    def launcher() -> int:
        raise RuntimeError("raised in the launcher")

    pid = sc.clone_vm_vfork(launcher)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 127
