"""Everything that runs after a fork or clone of pytest: the zygote, the relay, a
network's holder, a container's init, its test process and its call processes.

Rules for every module here (CPython's ``subprocess``/``multiprocessing.popen_fork``
discipline):

* the only way out of a child is ``os._exit`` in a ``finally`` (:mod:`.leave`): a child
  never returns into the caller's stack (that would run pytest's session twice);
* a child never raises to the host: failures go up the result channel as data
  (:mod:`pytest_rootless.protocol.framing` frames), then the child exits with a status the
  host can also read;
* nothing here touches pytest: the payload (what the test process runs) is a callable
  handed in by the host side, and runs after isolation is complete.
"""
