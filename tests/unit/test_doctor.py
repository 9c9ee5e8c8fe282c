"""The doctor on simulated hosts: a directory the test writes, with the files a kernel and
a distribution keep (sysctls, /proc/self/status, mountinfo, cgroups, /etc/subuid).

No trial touches the kernel here (``live=False``); where a check depends on the kernel's
answer, the test hands in that answer as data (:class:`Trial`), the way the real trial
reports it. ``tests/e2e/test_doctor.py`` runs the doctor on this host's real kernel.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_rootless import doctor as the_doctor
from pytest_rootless.__main__ import main
from pytest_rootless.doctor import MISSING, OK, OPTIONAL, UNTRIED, Check, Host, Trial
from pytest_rootless.runtime import limits, probe

ALL_CAPS = "000001ffffffffff"
NO_SETFCAP = f"{int(ALL_CAPS, 16) & ~(1 << probe.CAP_SETFCAP):016x}"
USER_CGROUP = "/user.slice/user-1000.slice/user@1000.service/app.slice/run.scope"

HEALTHY = {
    "proc/sys/kernel/osrelease": "6.8.0-generic\n",
    "proc/sys/user/max_user_namespaces": "15000\n",
    "proc/self/status": f"Name:\tpython\nCapEff:\t{ALL_CAPS}\nSeccomp:\t0\n",
    "proc/self/mountinfo": (
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
        "24 23 0:40 / /proc/sys/fs/binfmt_misc rw,relatime - autofs systemd-1 rw\n"
        "25 22 0:22 / /sys rw,nosuid - sysfs sysfs rw\n"
        "26 25 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    ),
    "proc/self/cgroup": f"0::{USER_CGROUP}\n",
    "proc/filesystems": "nodev\tproc\nnodev\toverlay\n",
    f"sys/fs/cgroup{USER_CGROUP}/cgroup.controllers": "cpu memory pids\n",
    f"sys/fs/cgroup{USER_CGROUP}/cgroup.subtree_control": "memory pids\n",
    f"sys/fs/cgroup{USER_CGROUP}/cgroup.procs": "",
    "etc/passwd": "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    "etc/subuid": "alice:100000:65536\n",
    "etc/subgid": "alice:100000:65536\n",
}


def simulate(tmp_path: Path, changes: dict[str, str | None] | None = None) -> str:
    """Write a healthy host under ``tmp_path``, with ``changes`` (None deletes a file)."""
    files: dict[str, str | None] = {**HEALTHY, **(changes or {})}
    for name, text in files.items():
        if text is None:
            continue
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def checks_of(
    root: str, uid: int = 1000, answers: dict[str, Trial] | None = None
) -> dict[str, Check]:
    host = Host(root=root, uid=uid, gid=uid, live=False)
    return {check.name: check for check in the_doctor.run_checks(host, answers)}


def test_a_healthy_host_has_nothing_missing(tmp_path: Path) -> None:
    checks = checks_of(simulate(tmp_path))
    assert {name: c.status for name, c in checks.items()} == {
        "kernel": OK,
        "user namespaces": OK,
        "id maps": OK,
        "mounts and pivot_root": OK,
        "fresh /proc": OK,
        "trial container": UNTRIED,  # a real container needs the real kernel
        "overlayfs in a user namespace": OK,
        "subordinate ids": OPTIONAL,  # no newuidmap/newgidmap under tmp_path
        "resource limits": OK,
    }
    assert "not tried" in checks["user namespaces"].found
    assert the_doctor.exit_code(list(checks.values())) == 0


# --- user namespaces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sysctl", "value", "uid", "cause", "fix"),
    [
        (
            "user/max_user_namespaces",
            "0",
            0,  # root too: the limit is for everyone
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            "sysctl -w user.max_user_namespaces=15000",
        ),
        (
            "kernel/unprivileged_userns_clone",
            "0",
            1000,
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        ),
        (
            "kernel/apparmor_restrict_unprivileged_userns",
            "1",
            1000,
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1)",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
            "for this Python allowing 'userns' (python -m pytest_rootless doctor prints one to "
            "install)",
        ),
    ],
)
def test_a_sysctl_that_forbids_user_namespaces_is_named_with_its_fix(
    tmp_path: Path, sysctl: str, value: str, uid: int, cause: str, fix: str
) -> None:
    checks = checks_of(simulate(tmp_path, {f"proc/sys/{sysctl}": value}), uid=uid)
    userns = checks["user namespaces"]
    assert (userns.status, userns.found, userns.fix) == (MISSING, cause, (fix,))
    # what needs a user namespace is not tried, rather than reported missing a second time
    assert checks["id maps"].status == UNTRIED
    assert checks["fresh /proc"].found == "needs user namespaces (above)"
    assert the_doctor.exit_code(list(checks.values())) == 1


def test_apparmor_restriction_does_not_apply_to_root(tmp_path: Path) -> None:
    root = simulate(tmp_path, {"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"})
    assert checks_of(root, uid=0)["user namespaces"].status == OK


REFUSED = Trial(False, "unshare(CLONE_NEWUSER)", errno.EPERM, "unshare: Operation not permitted")


def test_a_seccomp_filter_that_blocks_unshare_is_named(tmp_path: Path) -> None:
    status = f"CapEff:\t{ALL_CAPS}\nSeccomp:\t2\nSeccomp_filters:\t1\n"
    root = simulate(tmp_path, {"proc/self/status": status, ".dockerenv": ""})
    userns = checks_of(root, answers={"userns": REFUSED})["user namespaces"]
    assert userns.status == MISSING
    assert (
        "a seccomp filter on this process (Seccomp: 2 in /proc/self/status; this looks like "
        "Docker) blocks clone/unshare with CLONE_NEWUSER"
    ) in userns.found
    assert userns.fix == (
        "run outside that sandbox or with a profile that allows user namespaces "
        "(docker run --security-opt seccomp=unconfined)",
    )


def test_a_refusal_without_seccomp_blames_a_security_module(tmp_path: Path) -> None:
    userns = checks_of(simulate(tmp_path), answers={"userns": REFUSED})["user namespaces"]
    assert userns.status == MISSING
    assert "security module blocks clone(CLONE_NEWUSER)" in userns.found
    assert "Seccomp: 2" not in userns.found


def test_the_namespace_limit_reached(tmp_path: Path) -> None:
    full = Trial(False, "unshare(CLONE_NEWUSER)", errno.ENOSPC, "No space left on device")
    userns = checks_of(simulate(tmp_path), answers={"userns": full})["user namespaces"]
    assert userns.found == "the user-namespace limit is reached (ENOSPC)"


def test_a_working_unshare_under_a_seccomp_filter_is_ok(tmp_path: Path) -> None:
    status = f"CapEff:\t{ALL_CAPS}\nSeccomp:\t2\n"
    root = simulate(tmp_path, {"proc/self/status": status})
    userns = checks_of(root, answers={"userns": Trial(True)})["user namespaces"]
    assert userns.status == OK
    assert "a seccomp filter is on, and allows it" in userns.found


# --- id maps ----------------------------------------------------------------------------------


def test_root_without_cap_setfcap_cannot_map_itself(tmp_path: Path) -> None:
    status = f"CapEff:\t{NO_SETFCAP}\nSeccomp:\t0\n"
    idmap = checks_of(simulate(tmp_path, {"proc/self/status": status}), uid=0)["id maps"]
    assert idmap.status == MISSING
    assert "uid 0 without CAP_SETFCAP" in idmap.found
    assert checks_of(simulate(tmp_path), uid=0)["id maps"].status == OK


def test_cap_setfcap_matters_only_to_root(tmp_path: Path) -> None:
    status = f"CapEff:\t{NO_SETFCAP}\nSeccomp:\t0\n"
    idmap = checks_of(simulate(tmp_path, {"proc/self/status": status}), uid=1000)["id maps"]
    assert idmap.status == OK
    assert "uid 1000 -> 1000, gid 1000 -> 1000" in idmap.found


def test_a_refused_map_blames_a_security_module(tmp_path: Path) -> None:
    refused = Trial(False, "write(/proc/self/uid_map, '1000 1000 1')", errno.EPERM, "denied")
    checks = checks_of(simulate(tmp_path), answers={"idmap": refused})
    assert checks["id maps"].status == MISSING
    assert "an LSM likely strips capabilities" in checks["id maps"].found
    assert checks["mounts and pivot_root"].found == "needs id maps (above)"


# --- mounts and /proc ------------------------------------------------------------------------


def test_pivot_root_cannot_leave_the_initial_ramfs(tmp_path: Path) -> None:
    mountinfo = HEALTHY["proc/self/mountinfo"].replace("- ext4 /dev/vda rw", "- rootfs rootfs rw")
    mounts = checks_of(simulate(tmp_path, {"proc/self/mountinfo": mountinfo}))
    assert mounts["mounts and pivot_root"].status == MISSING
    assert "initial ramfs" in mounts["mounts and pivot_root"].found


DOCKER_MASKS = (
    "30 23 0:50 / /proc/kcore rw,nosuid - tmpfs tmpfs rw\n"
    "31 23 0:50 / /proc/keys rw,nosuid - tmpfs tmpfs rw\n"
    "32 23 0:51 / /proc/acpi ro,relatime - tmpfs tmpfs ro\n"
    "33 23 0:21 /sys /proc/sys ro,nosuid - proc proc rw\n"
)


def test_a_masked_proc_is_missing_with_what_masks_it(tmp_path: Path) -> None:
    root = simulate(
        tmp_path, {"proc/self/mountinfo": HEALTHY["proc/self/mountinfo"] + DOCKER_MASKS}
    )
    proc = checks_of(root)["fresh /proc"]
    assert proc.status == MISSING
    assert "mounts over /proc/acpi, /proc/kcore, /proc/keys, /proc/sys hide parts of it" in (
        proc.found
    )
    assert "systempaths=unconfined" in proc.fix[0]


def test_binfmt_misc_on_an_empty_proc_directory_masks_nothing(tmp_path: Path) -> None:
    # HEALTHY has systemd's binfmt_misc automount on /proc/sys/fs/binfmt_misc
    assert checks_of(simulate(tmp_path))["fresh /proc"].status == OK


def test_a_proc_that_hides_nothing_elsewhere_is_enough(tmp_path: Path) -> None:
    """Inside an isolated test: /proc has read-only covers, and an uncovered proc is kept
    elsewhere (the kernel looks at every proc mount of the namespace)."""
    hidden = "40 24 0:60 / /dev/.rootless-proc rw,nosuid - proc proc rw\n"
    mountinfo = HEALTHY["proc/self/mountinfo"] + DOCKER_MASKS + hidden
    proc = checks_of(simulate(tmp_path, {"proc/self/mountinfo": mountinfo}))["fresh /proc"]
    assert proc.status == OK
    assert "/dev/.rootless-proc" in proc.found


def test_the_kernels_answer_wins_over_mountinfo(tmp_path: Path) -> None:
    root = simulate(
        tmp_path, {"proc/self/mountinfo": HEALTHY["proc/self/mountinfo"] + DOCKER_MASKS}
    )
    mounted = checks_of(root, answers={"proc": Trial(True)})["fresh /proc"]
    assert mounted.status == OK
    refused = Trial(False, "mount('proc', '/tmp/x', 'proc', MS_NOSUID)", errno.EPERM, "EPERM")
    proc = checks_of(simulate(tmp_path), answers={"proc": refused})["fresh /proc"]
    assert proc.status == MISSING
    assert proc.found.startswith("mounting a fresh /proc was refused")


# --- kernel and overlayfs ----------------------------------------------------------------------


def test_an_old_kernel_is_missing_and_so_is_overlay_in_a_user_namespace(tmp_path: Path) -> None:
    checks = checks_of(simulate(tmp_path, {"proc/sys/kernel/osrelease": "5.10.0-21-amd64"}))
    assert checks["kernel"].status == MISSING
    assert "mount_setattr(2)" in checks["kernel"].found
    assert checks["overlayfs in a user namespace"].status == OPTIONAL
    assert checks["overlayfs in a user namespace"].found.endswith("need Linux 5.11+")


def test_a_failed_overlay_trial_is_optional(tmp_path: Path) -> None:
    failed = Trial(False, "mount('overlay', ...)", errno.EINVAL, "mount: Invalid argument")
    overlay = checks_of(simulate(tmp_path), answers={"overlay": failed})[
        "overlayfs in a user namespace"
    ]
    assert overlay.status == OPTIONAL
    assert overlay.why.startswith("copy-on-write")


# --- the trial container ---------------------------------------------------------------------


def test_the_trial_containers_reason_is_split_into_cause_and_fix(tmp_path: Path) -> None:
    failed = Trial(False, message="the hostname was refused; fix: do something")
    container = checks_of(simulate(tmp_path), answers={"container": failed})["trial container"]
    assert (container.status, container.found, container.fix) == (
        MISSING,
        "the hostname was refused",
        ("do something",),
    )


def test_the_trial_container_does_not_repeat_a_cause_shown_above(tmp_path: Path) -> None:
    root = simulate(tmp_path, {"proc/sys/user/max_user_namespaces": "0"})
    reason = str(probe.userns_sysctls(root)[0])
    container = checks_of(root, answers={"container": Trial(False, message=reason)})
    assert container["trial container"].found == "refused, as user namespaces (above) says"


# --- subordinate ids ---------------------------------------------------------------------------


def _helpers(tmp_path: Path, mode: int) -> None:
    for name in ("newuidmap", "newgidmap"):
        path = tmp_path / "usr/bin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        path.chmod(mode)


def test_subordinate_ids_without_helpers(tmp_path: Path) -> None:
    subids = checks_of(simulate(tmp_path))["subordinate ids"]
    assert subids.status == OPTIONAL
    assert subids.found == (
        "alice owns 65536 uids from 100000, 65536 gids from 100000; "
        "newuidmap and newgidmap are not installed"
    )
    assert subids.fix == ("apt install uidmap (Debian, Ubuntu); dnf install shadow-utils (Fedora)",)


def test_subordinate_ids_without_ranges_name_the_user(tmp_path: Path) -> None:
    subids = checks_of(simulate(tmp_path, {"etc/subuid": "bob:100000:65536\n"}))["subordinate ids"]
    assert subids.found.startswith("no range for alice in /etc/subuid;")
    assert subids.fix[0] == "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice"


def test_a_helper_must_be_setuid(tmp_path: Path) -> None:
    root = simulate(tmp_path)
    _helpers(tmp_path, 0o755)
    subids = checks_of(root)["subordinate ids"]
    assert "/usr/bin/newuidmap is neither setuid root nor has file capabilities" in subids.found


@pytest.mark.skipif(os.getuid() != 0, reason="a setuid-root file can only be made by root")
def test_setuid_root_helpers_and_ranges_are_ok(tmp_path: Path) -> None:
    root = simulate(tmp_path)
    _helpers(tmp_path, 0o755 | stat.S_ISUID)
    subids = checks_of(root)["subordinate ids"]
    assert subids.status == OK
    assert subids.found.endswith("newuidmap and newgidmap are setuid")


def test_root_needs_no_subordinate_ids(tmp_path: Path) -> None:
    root = simulate(tmp_path, {"etc/subuid": None, "etc/subgid": None})
    assert checks_of(root, uid=0)["subordinate ids"].status == OK


# --- resource limits ---------------------------------------------------------------------------


def backend(root: str, uid: int = 1000) -> the_doctor.Limits:
    return the_doctor.limit_backend(Host(root=root, uid=uid, live=False))


def test_a_delegated_cgroup_v2_with_controllers_for_children(tmp_path: Path) -> None:
    limits = backend(simulate(tmp_path))
    assert limits.backend == "cgroup v2"
    assert limits.fix == ()


def test_controllers_available_but_not_enabled_for_children(tmp_path: Path) -> None:
    limits = backend(
        simulate(tmp_path, {f"sys/fs/cgroup{USER_CGROUP}/cgroup.subtree_control": "cpu\n"})
    )
    assert limits.backend == "rlimits"
    assert f"memory and pids not enabled for children of /sys/fs/cgroup{USER_CGROUP}" in (
        limits.found
    )
    assert limits.fix[0].startswith(
        f"enable them: echo '+memory +pids' > /sys/fs/cgroup{USER_CGROUP}/cgroup.subtree_control"
    )


def test_a_cgroup_without_the_controllers(tmp_path: Path) -> None:
    cgroup = f"sys/fs/cgroup{USER_CGROUP}"
    limits = backend(
        simulate(
            tmp_path,
            {f"{cgroup}/cgroup.controllers": "cpu\n", f"{cgroup}/cgroup.subtree_control": ""},
        )
    )
    assert "has no memory or pids controller" in limits.found
    assert any("Delegate=memory pids" in fix for fix in limits.fix)


def test_a_read_only_cgroup_filesystem_is_not_delegated(tmp_path: Path) -> None:
    mountinfo = HEALTHY["proc/self/mountinfo"].replace(
        "/sys/fs/cgroup rw,nosuid", "/sys/fs/cgroup ro,nosuid"
    )
    limits = backend(simulate(tmp_path, {"proc/self/mountinfo": mountinfo}))
    assert limits.backend == "rlimits"
    assert f"your cgroup /sys/fs/cgroup{USER_CGROUP} is not delegated to you" in limits.found
    assert "systemd-run --user --scope -p Delegate=yes" in limits.fix[0]


V1 = {
    "proc/self/mountinfo": (
        "22 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "23 22 0:21 / /proc rw - proc proc rw\n"
        "31 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    ),
    "proc/self/cgroup": "4:memory:/ci/job\n8:pids:/ci/job\n1:cpu,cpuacct:/\n",
    "sys/fs/cgroup/memory/ci/job/cgroup.procs": "",
    "sys/fs/cgroup/pids/ci/job/cgroup.procs": "",
}


def test_cgroup_v1_hierarchies_writable_as_root(tmp_path: Path) -> None:
    limits = backend(simulate(tmp_path, dict(V1)), uid=0)
    assert limits.backend == "cgroup v1 (root)"
    assert "no cgroup v2" not in limits.found


def test_cgroup_v1_read_only_means_rlimits(tmp_path: Path) -> None:
    mountinfo = V1["proc/self/mountinfo"].replace("/memory rw -", "/memory ro -")
    limits = backend(simulate(tmp_path, {**V1, "proc/self/mountinfo": mountinfo}), uid=0)
    assert limits.backend == "memory by rlimits, pids by cgroup v1 (root)"
    assert "cgroup v1: /sys/fs/cgroup/memory are not writable by you" in limits.found


def test_no_cgroups_at_all_means_rlimits(tmp_path: Path) -> None:
    mountinfo = "22 1 254:0 / / rw - ext4 /dev/vda rw\n23 22 0:21 / /proc rw - proc proc rw\n"
    limits = backend(simulate(tmp_path, {"proc/self/mountinfo": mountinfo}))
    assert limits.backend == "rlimits"
    assert limits.found.startswith("rlimits: no cgroup v2 hierarchy is mounted.")
    check = checks_of(simulate(tmp_path, {"proc/self/mountinfo": mountinfo}))["resource limits"]
    assert check.status == OPTIONAL  # limits are optional: isolation itself still works


def test_the_runtimes_own_choice_wins_over_the_files(tmp_path: Path) -> None:
    """Live, the runtime's detection (it makes a trial cgroup) decides; the files of a
    healthy cgroup v2 host cannot make the doctor promise more than the runtime does."""
    memory_only = limits.Backend(
        memory=limits.Hierarchy("memory", 2, f"/sys/fs/cgroup{USER_CGROUP}"),
        pids=None,
        nproc_works=True,
    )
    found = the_doctor.limit_backend(Host(root=simulate(tmp_path), live=False), memory_only)
    assert found.backend == "memory by cgroup v2, pids by rlimits"
    assert "a trial cgroup could not be made" in found.found


def test_real_root_without_a_pids_cgroup_is_told_pids_is_refused(tmp_path: Path) -> None:
    nothing = limits.Backend(memory=None, pids=None, nproc_works=False)
    found = the_doctor.limit_backend(Host(root=simulate(tmp_path), uid=0, live=False), nothing)
    assert found.backend == "rlimits"
    assert found.found.endswith("but not real root's: a pids limit is refused")


# --- the report and the command -----------------------------------------------------------------


def test_the_report_is_one_line_per_check_then_why_and_fix_indented(tmp_path: Path) -> None:
    root = simulate(tmp_path, {"proc/sys/user/max_user_namespaces": "0"})
    out = io.StringIO()
    assert the_doctor.doctor(Host(root=root, uid=1000, live=False), out) == 1
    lines = out.getvalue().splitlines()
    assert all(len(line) <= the_doctor.WIDTH for line in lines)
    at = lines.index(
        "missing   user namespaces: user namespaces are disabled (user.max_user_namespaces = 0)"
    )
    assert lines[at + 1].startswith("          why: every container starts with a user namespace")
    assert "          fix: sysctl -w user.max_user_namespaces=15000" in lines[at + 1 : at + 4]
    assert lines[-2].startswith("isolation cannot work here (user namespaces):")
    starts = {line.split()[0] for line in lines[3:] if line and not line.startswith(" ")}
    assert {OK, MISSING, UNTRIED} <= starts


def test_the_command_reads_a_simulated_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = simulate(tmp_path)
    assert main(["doctor", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "kernel trials off" in out
    assert "ok        user namespaces: no sysctl forbids them (not tried)" in out
    assert "untried   trial container: no container was started (no kernel trials)" in out


def test_the_command_exits_1_when_isolation_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = simulate(tmp_path, {"proc/sys/user/max_user_namespaces": "0"})
    assert main(["doctor", "--root", root]) == 1
    assert "fix: sysctl -w user.max_user_namespaces=15000" in capsys.readouterr().out


def test_the_command_refuses_a_missing_root(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["doctor", "--root", "/nonexistent/host"])
    assert exited.value.code == 2
    assert "--root /nonexistent/host: not a directory" in capsys.readouterr().err


def test_an_apparmor_restricted_host_is_given_a_profile_to_install(tmp_path: Path) -> None:
    """The profile names the interpreter AppArmor sees (a venv's python resolved), with
    the commands that install and load it as printed, and the sysctl for a CI machine."""
    root = simulate(tmp_path, {"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"})
    out = io.StringIO()
    assert the_doctor.doctor(Host(root=root, uid=1000, live=False), out) == 1
    text = out.getvalue()
    real = os.path.realpath(sys.executable)
    name = "pytest-rootless-" + real.strip("/").replace("/", "-")
    assert f"profile {name} {real} flags=(unconfined) {{" in text
    assert f"sudo apparmor_parser -r /etc/apparmor.d/{name}" in text
    assert "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in text
    # As printed, the commands are a shell script that writes the profile file.
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "sudo tee" in line)
    last = next(i for i in range(first, len(lines)) if lines[i].strip() == "EOF")
    script = textwrap.dedent("\n".join(lines[first : last + 1]))
    written = tmp_path / "profile"
    script = script.replace(f"sudo tee /etc/apparmor.d/{name} >/dev/null", f"cat > {written}")
    subprocess.run(["sh", "-c", script], check=True)
    profile = written.read_text()
    assert profile.splitlines()[:2] == ["abi <abi/4.0>,", "include <tunables/global>"]
    assert "\n  userns,\n" in profile
    assert profile.rstrip().endswith("}")


def test_no_profile_where_apparmor_does_not_restrict(tmp_path: Path) -> None:
    out = io.StringIO()
    the_doctor.doctor(Host(root=simulate(tmp_path), uid=1000, live=False), out)
    assert "apparmor_parser" not in out.getvalue()
