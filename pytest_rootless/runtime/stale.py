"""What a killed session leaves behind, and the next session removes: directories named
``PREFIX<pid>-...`` after the session's pid (its state directory, its containers'
cgroups), which no unconfigure and no reaping got to remove."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

#: The prefix of the directories and cgroups a session makes, then its pid and a dash.
PREFIX = "pytest-rootless-"


def session_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be the session that named a directory after it.

    The test is kill(pid, 0) (kill(2)): it asks the PID namespace the session took its pid
    from, where ``/proc/PID`` would ask whichever proc is mounted on /proc. ESRCH means
    gone; EPERM (a process of another user) counts as alive. A pid the kernel has reused
    for another process counts as alive too, on purpose: the directory then stays until
    that process ends, an empty directory's worth of cost, where the opposite mistake
    would remove the state of a session still running.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale(parent: str, remove: Callable[[str], object]) -> None:
    """Call ``remove`` on each directory of ``parent`` that this user made for a session
    (``PREFIX<pid>-...``) whose process is gone (:func:`session_alive`)."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = re.match(rf"{PREFIX}(\d+)-", entry.name)
        if match is None:
            continue
        try:
            ours = entry.is_dir(follow_symlinks=False) and (
                entry.stat(follow_symlinks=False).st_uid == os.getuid()
            )
        except OSError:
            continue
        if ours and not session_alive(int(match.group(1))):
            remove(entry.path)
