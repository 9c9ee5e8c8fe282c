"""The conftest hooks, ini defaults, --rootless-trace and report fields JSON cannot hold."""

from __future__ import annotations

import pytest


def test_conftest_hook_shapes_a_directory_of_tests(pytester: pytest.Pytester) -> None:
    data = pytester.mkdir("shared-data")
    (data / "answer.txt").write_text("42")
    pytester.makeconftest(
        f"""
        def pytest_rootless_options(config, item, options):
            options.setdefault("env", {{}})["FROM_HOOK"] = item.name
            options.setdefault("mounts", {{}})["/data"] = {str(data)!r}

        def pytest_rootless_report_header(config):
            return ["rootless-extra: hello from conftest"]
        """
    )
    pytester.makepyfile(
        """
        import os, pytest

        @pytest.mark.isolated(env={"FROM_MARKER": "yes"})
        def test_shaped():
            assert os.environ["FROM_HOOK"] == "test_shaped"
            assert os.environ["FROM_MARKER"] == "yes"
            assert open("/data/answer.txt").read() == "42"
            with pytest.raises(OSError):
                open("/data/new.txt", "w")
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["rootless-extra: hello from conftest"])


def test_hook_result_is_validated(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_rootless_options(config, item, options):
            options["timeout"] = "forever"
        """
    )
    pytester.makepyfile("import pytest\n@pytest.mark.isolated\ndef test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "rootless")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*timeout='forever' is invalid*"])


def test_ini_defaults(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        rootless_hostname = from-ini
        rootless_env =
            COLOUR=blue
        """
    )
    pytester.makepyfile(
        """
        import os, socket, pytest

        @pytest.mark.isolated
        def test_ini():
            assert socket.gethostname() == "from-ini"
            assert os.environ["COLOUR"] == "blue"

        @pytest.mark.isolated(hostname="marker-wins")
        def test_marker_over_ini():
            assert socket.gethostname() == "marker-wins"
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["rootless: isolating*"])


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrootless_network = every where\n")  # not a network name
    pytester.makepyfile("def test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "rootless")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*network='every where'*"])


def test_trace_prints_each_kernel_step(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.isolated\ndef test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "rootless", "--rootless-trace")
    result.assert_outcomes(passed=1)
    # "[" opens a character class in fnmatch patterns: "[[]" is a literal bracket
    result.stdout.fnmatch_lines(
        [
            line.replace("[", "[[]")
            for line in [
                "rootless trace test_trace_prints_each_kernel_step.py::test_x:",
                "  [host] clone(CLONE_NEWNS|CLONE_NEWUSER|CLONE_NEWPID|SIGCHLD) = *",
                "  [init] write(/proc/self/uid_map, *",
                "  [init] mount(None, '/', None, MS_REC|MS_PRIVATE)",
                "  [init] mount('*/pytest-rootless-*/root-*', '/tmp', None, MS_BIND)",
                "  [init] mount('/usr', '/tmp/usr', None, MS_BIND|MS_REC)",
                "  [init] mount_setattr('/tmp/usr', AT_RECURSIVE, MOUNT_ATTR_RDONLY)",
                "  [init] pivot_root('.', '.')",
                "  [init] umount2('.', MNT_DETACH)",
                "  [init] unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER"
                "|CLONE_NEWNET)",
                "  [init] sethostname('sandbox')",
                "  [init] ioctl(SIOCSIFFLAGS, 'lo', IFF_UP)",
                "  [test] setsid()",
                "  [test] capset(effective=0, permitted=0, inheritable=0)",
                "  [test] prctl(PR_SET_NO_NEW_PRIVS, 1)",
                "  [test] close_range(*",
            ]
        ]
    )


def test_report_fields_json_cannot_hold_still_arrive(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        class Opaque:
            def __repr__(self):
                return "<Opaque thing>"

        @pytest.mark.isolated
        def test_props(record_property):
            record_property("plain", 3)
            record_property("opaque", Opaque())
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "--junitxml=out.xml", "-o", "junit_family=xunit1"
    )
    result.assert_outcomes(passed=1)
    xml = (pytester.path / "out.xml").read_text()
    assert '<property name="plain" value="3" />' in xml
    assert '<property name="opaque" value="&lt;Opaque thing&gt;" />' in xml
