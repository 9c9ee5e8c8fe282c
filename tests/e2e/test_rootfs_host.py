"""rootfs="host": the whole host tree read-only, with fresh /tmp, HOME, /proc and /dev."""

from __future__ import annotations

import os
import pwd
import uuid
from pathlib import Path

import pytest

from .. import procscan


def test_host_tree_read_only_with_fresh_scratch(pytester: pytest.Pytester) -> None:
    marker = Path("/tmp") / f"rootless-host-marker-{uuid.uuid4().hex}"
    marker.write_text("host")
    try:
        pytester.makepyfile(
            f"""
            import errno, os, socket, sys
            import pytest
            from procscan import pids

            @pytest.mark.isolated(rootfs="host", hostname="hosty")
            def test_inside():
                assert os.path.isdir(sys.prefix)  # the running Python, even under /tmp
                assert os.path.exists(__file__)   # the project, even under /tmp
                assert not os.path.exists({str(marker)!r})  # /tmp is fresh
                assert os.listdir(os.environ["HOME"]) == []
                # the account's real home is hidden too, whatever HOME says
                account_home = {pwd.getpwuid(os.getuid()).pw_dir!r}
                if os.path.isdir(account_home):
                    # only the way to the running Python, if it lives there (pyenv)
                    for entry in os.listdir(account_home):
                        path = os.path.join(account_home, entry)
                        assert sys.base_prefix.startswith(path + "/"), path
                assert os.path.exists("/etc/os-release")  # the host's own /etc
                assert open("/etc/hostname").read().strip() == "hosty"
                assert socket.gethostname() == "hosty"
                assert pids() == [1, 2]
                with pytest.raises(OSError) as exc:
                    open("/etc/rootless-probe", "w")
                assert exc.value.errno == errno.EROFS
                import json, decimal  # imports still work
            """,
            procscan=procscan.source(),
        )
        result = pytester.runpytest_subprocess("-p", "rootless")
        result.assert_outcomes(passed=1)
    finally:
        marker.unlink()
    assert not os.path.exists("/etc/rootless-probe")
