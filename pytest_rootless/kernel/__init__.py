"""The kernel layer: every ``ctypes`` call, each named as its man page names it and
errno-checked (:mod:`.libc`), and the readers of ``/proc``. Imports nothing above it."""
