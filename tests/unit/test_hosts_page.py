"""The snippets of docs/hosts-and-doctor.md are the doctor's own fixes for those hosts,
simulated (``doctor --root``): a flag the page tells you to use is one the doctor names
for that kind of host, and the AppArmor profile shown is the one it prints."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_rootless.doctor import apparmor

from .test_doctor import ALL_CAPS, DOCKER_MASKS, HEALTHY, REFUSED, checks_of, simulate

PAGE = Path(__file__).parents[2] / "docs" / "hosts-and-doctor.md"


def snippets(heading: str) -> str:
    """The fenced code of the section under ``### heading``."""
    text = PAGE.read_text()
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", section, re.S))


def fixes(checks: dict[str, object]) -> str:
    return " ".join(" ".join(getattr(check, "fix", ())) for check in checks.values())


def test_docker_and_gitlab_lift_what_the_doctor_names_for_docker(tmp_path: Path) -> None:
    """Docker's seccomp profile (user namespaces refused), then its masked /proc: the
    doctor names each fix in turn (the /proc line is tried once user namespaces work)."""
    status = f"CapEff:\t{ALL_CAPS}\nSeccomp:\t2\nSeccomp_filters:\t1\n"
    filtered = simulate(tmp_path / "seccomp", {"proc/self/status": status, ".dockerenv": ""})
    masked = simulate(
        tmp_path / "masked",
        {".dockerenv": "", "proc/self/mountinfo": HEALTHY["proc/self/mountinfo"] + DOCKER_MASKS},
    )
    named = fixes(checks_of(filtered, answers={"userns": REFUSED})) + fixes(checks_of(masked))
    for flag in ("seccomp=unconfined", "systempaths=unconfined"):
        assert flag in named
        assert f"--security-opt {flag}" in snippets("Docker")
    gitlab = snippets("GitLab CI (Docker executor)")
    assert '"seccomp:unconfined"' in gitlab  # the runner's spelling of the same options
    assert '"systempaths=unconfined"' in gitlab


def test_podman_unmasks_what_the_doctor_names(tmp_path: Path) -> None:
    root = simulate(
        tmp_path, {"proc/self/mountinfo": HEALTHY["proc/self/mountinfo"] + DOCKER_MASKS}
    )
    assert "unmask=ALL" in fixes(checks_of(root))
    assert "podman run --security-opt unmask=ALL" in snippets("Podman")


def test_github_actions_runs_the_sysctl_the_doctor_names(tmp_path: Path) -> None:
    root = simulate(tmp_path, {"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"})
    sysctl = "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    assert sysctl in fixes(checks_of(root))
    assert f"run: sudo {sysctl}" in snippets("GitHub Actions (Ubuntu runners)")


def test_the_desktop_profile_is_the_one_the_doctor_prints() -> None:
    shown = [line.strip() for line in snippets("An Ubuntu 23.10+ desktop").splitlines()]
    shown = [line for line in shown if line]
    printed = [
        line.strip()
        for line in apparmor.install_lines("/usr/bin/python3.12")
        if line.startswith("  ") and line.strip()
    ]
    assert shown == printed[: len(shown)]
    assert shown[-1] == "sudo apparmor_parser -r /etc/apparmor.d/pytest-rootless-usr-bin-python3.12"
