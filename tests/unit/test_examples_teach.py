"""Every lesson in examples/ says which kernel mechanism it teaches, citing its man page,
and the course index (examples/README.md) lists every lesson in order."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("test_*.py"))

#: What each lesson's docstring must name, by topic (the file name without its number, so
#: renumbering the course changes nothing here): the man pages of the kernel features it
#: teaches, first the one the index cites, then the key terms.
FEATURES: dict[str, tuple[str, ...]] = {
    "pid_namespace": ("pid_namespaces(7)", "PID 1", "wait(2)", "SIGKILL"),
    "user_namespace": ("user_namespaces(7)", "capabilities(7)", "uid_map", "no_new_privs"),
    "fake_root": ("user_namespaces(7)", "capabilities(7)", "mount_namespaces(7)", "chown(2)"),
    "mount_namespace": ("mount_namespaces(7)", "mount_setattr(2)", "EROFS", "tmpfs"),
    "minimal_root": ("pivot_root(2)", "chroot(2)", "umount2(2)", "MNT_DETACH"),
    "uts_namespace": ("uts_namespaces(7)", "sethostname(2)", "uname(2)"),
    "ipc_namespace": ("ipc_namespaces(7)", "sysvipc(7)", "mq_overview(7)", "CLONE_NEWIPC"),
    "network_namespace": ("network_namespaces(7)", "ENETUNREACH", "lo"),
    "private_network": ("network_namespaces(7)", "veth(4)", "user_namespaces(7)", "/etc/hosts"),
    "limits": ("cgroups(7)", "setrlimit(2)", "RLIMIT_NPROC", "RLIMIT_CPU", "pids.max"),
    "not_a_vm": ("namespaces(7)", "uname(2)", "time_namespaces(7)", "/proc/modules"),
    "container_fixture": ("pid_namespaces(7)", "unix(7)"),
    "copy_on_write": ("overlayfs", "mount(2)", "copy-up", "whiteout"),
    "rootless": ("user_namespaces(7)", "uid_map"),
}


def topic(lesson: Path) -> str:
    return re.sub(r"^test_\d+_", "", lesson.stem)


def docstring(lesson: Path) -> str:
    return ast.get_docstring(ast.parse(lesson.read_text())) or ""


def test_the_course_has_lessons_in_order() -> None:
    numbers = [int(re.match(r"test_(\d+)_", p.name).group(1)) for p in EXAMPLES]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(EXAMPLES) + 1))
    assert 10 <= len(EXAMPLES) <= 14, f"{len(EXAMPLES)} lessons: the course has 10 to 14"


@pytest.mark.parametrize("lesson", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_lesson_names_its_kernel_mechanism(lesson: Path) -> None:
    text = docstring(lesson)
    assert re.search(r"\b[a-z_]+\(\d\)", text), "cite the man page, e.g. pid_namespaces(7)"
    assert "Why it matters" in text
    assert text.startswith(f"Lesson {int(lesson.name[5:7])}: "), "the title names its number"


@pytest.mark.parametrize("lesson", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_lesson_names_the_features_it_teaches(lesson: Path) -> None:
    assert topic(lesson) in FEATURES, f"add {topic(lesson)!r} and what it teaches to FEATURES"
    text = " ".join(docstring(lesson).split())  # one line: terms may wrap
    missing = [term for term in FEATURES[topic(lesson)] if term not in text]
    assert missing == [], f"the docstring does not name {missing}"


def test_the_index_lists_every_lesson_in_order_with_its_feature() -> None:
    index = (EXAMPLES_DIR / "README.md").read_text()
    rows = re.findall(r"^\| \[`(test_\w+\.py)`\]\(\1\) \|(.*)\|(.*)\|$", index, re.MULTILINE)
    assert [name for name, _, _ in rows] == [p.name for p in EXAMPLES]
    for name, _, feature in rows:
        man_page = FEATURES[topic(Path(name))][0]
        assert man_page in feature, f"{name}: the index's kernel feature should cite {man_page}"
