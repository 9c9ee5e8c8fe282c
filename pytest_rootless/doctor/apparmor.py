"""An AppArmor profile that lets this Python create user namespaces, printed by the doctor
where AppArmor restricts them (``kernel.apparmor_restrict_unprivileged_userns = 1``,
Ubuntu 23.10 and later, GitHub Actions' Ubuntu runners).

Such a host lets a process create a user namespace but moves it into a profile that denies
every capability, unless the program it runs has a profile with the ``userns`` rule
(apparmor.d(5); Ubuntu ships them for browsers the same way). AppArmor attaches a profile
by the path of the executable as the kernel resolved it: a venv's ``python`` is a symlink,
so the profile names the interpreter it leads to.
"""

from __future__ import annotations

import os
import re
import sys

PROFILE_DIR = "/etc/apparmor.d"


def interpreter() -> str:
    """The path AppArmor sees for this Python: the venv's link resolved."""
    return os.path.realpath(sys.executable)


def profile_name(path: str) -> str:
    """``pytest-rootless-usr-bin-python3.12`` for ``/usr/bin/python3.12``."""
    return "pytest-rootless-" + re.sub(r"[^A-Za-z0-9._-]+", "-", path.strip("/"))


def profile(path: str) -> str:
    """The profile: unconfined in every other way, with the ``userns`` rule."""
    name = profile_name(path)
    return (
        "abi <abi/4.0>,\n"
        "include <tunables/global>\n"
        "\n"
        f"profile {name} {path} flags=(unconfined) {{\n"
        "  userns,\n"
        "\n"
        f"  include if exists <local/{name}>\n"
        "}\n"
    )


def install_lines(path: str | None = None) -> list[str]:
    """What the doctor prints: what the profile grants, the commands that install and
    load it as printed, and the narrower alternative."""
    path = path or interpreter()
    name = profile_name(path)
    file = f"{PROFILE_DIR}/{name}"
    return [
        "An AppArmor profile lets every program this Python runs create user namespaces,",
        "and grants nothing else. AppArmor attaches it by the interpreter's real path (a",
        f"venv's python is a link to it): {path}. Install and load it:",
        "",
        f"  sudo tee {file} >/dev/null <<'EOF'",
        *(f"  {line}" if line else "" for line in profile(path).splitlines()),
        "  EOF",
        f"  sudo apparmor_parser -r {file}",
        "",
        "Narrower in time, for an ephemeral CI machine thrown away after the job: lift the",
        "restriction until the next boot, and install nothing:",
        "",
        "  sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
    ]
