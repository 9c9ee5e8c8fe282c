"""Every lesson in examples/ says which kernel mechanism it teaches, citing its man page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("test_*.py"))


def test_the_course_has_lessons_in_order() -> None:
    numbers = [int(re.match(r"test_(\d+)_", p.name).group(1)) for p in EXAMPLES]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(EXAMPLES) + 1))


@pytest.mark.parametrize("lesson", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_lesson_names_its_kernel_mechanism(lesson: Path) -> None:
    docstring = ast.get_docstring(ast.parse(lesson.read_text())) or ""
    assert re.search(r"\b[a-z_]+\(\d\)", docstring), "cite the man page, e.g. pid_namespaces(7)"
    assert "Why it matters" in docstring
