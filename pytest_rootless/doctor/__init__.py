"""``python -m pytest_rootless doctor``: what this host allows, one capability at a time.

Each check prints one line, ``ok``, ``missing`` (isolation cannot work until it is
fixed), ``optional`` (only some features need it) or ``untried``, then, when something
is wrong, why it matters and the fix. The exit status is 1 when anything needed is
missing, so a CI job can run the doctor first.

Two kinds of evidence, as in :mod:`..runtime.probe`:

* files the kernel and the distribution keep (sysctls, ``/proc/self/status``,
  ``/proc/self/mountinfo``, ``/proc/self/cgroup``, ``/etc/subuid``...), read under
  :attr:`Host.root`, so a test can point the doctor at a simulated host;
* *trials*: a forked child tries the real thing (a user namespace, an id map, mounts,
  a fresh ``/proc``, overlayfs) in namespaces of its own, then exits; and one real
  container is started by the runtime itself. The kernel's answer wins over what the
  files suggest; the files explain a refusal. Trials can be turned off (a simulated
  host, ``--no-trials``), and a test can hand in canned answers (:class:`Trial`).

The modules: :mod:`.host` (where the facts are read), :mod:`.trials` (the forked
children), :mod:`.checks` (one ``check_*`` per line of the report), :mod:`.limits` (the
limits backend, as the runtime chooses it), :mod:`.render` (the report and exit status).
"""

from .checks import MISSING, OK, OPTIONAL, UNTRIED, Check, run_checks
from .host import Host
from .limits import Limits, limit_backend
from .render import WIDTH, doctor, exit_code, render, verdict
from .trials import Trial

__all__ = [
    "MISSING",
    "OK",
    "OPTIONAL",
    "UNTRIED",
    "WIDTH",
    "Check",
    "Host",
    "Limits",
    "Trial",
    "doctor",
    "exit_code",
    "limit_backend",
    "render",
    "run_checks",
    "verdict",
]
