"""Containers without pytest: options, the mount plan, limits, private networks, and the
host's side of starting, following and reaping containers. :mod:`.child` holds what runs
after a fork."""
