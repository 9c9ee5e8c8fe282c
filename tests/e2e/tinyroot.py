"""A tiny root filesystem the tests build themselves (no download): the host's /bin/sh and
the shared libraries it needs, and the symlink an image has for resolv.conf."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def make_tiny_root(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    shutil.copy2("/bin/sh", root / "bin" / "sh")
    libraries = subprocess.run(["ldd", "/bin/sh"], capture_output=True, text=True).stdout
    for word in libraries.split():
        if word.startswith("/"):
            target = root / word.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(word, target)
    (root / "etc" / "resolv.conf").symlink_to("../run/resolvconf/resolv.conf")
