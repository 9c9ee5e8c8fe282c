"""The README and docs/ link only to files and headings that exist (scripts/check_docs.py),
and the checker's slugs are GitHub's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "check_docs.py"


@pytest.fixture(scope="module")
def check_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_docs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_relative_link_resolves(check_docs: ModuleType) -> None:
    assert check_docs.check_links() == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("What the test sees (the minimal root)", "what-the-test-sees-the-minimal-root"),
        ("The `container` fixture", "the-container-fixture"),
        ("Options, ini values and flags", "options-ini-values-and-flags"),
        ("pytest_rootless_options and [links](x.md)", "pytest_rootless_options-and-links"),
        ("Self-test: 1.5\u00d7 faster", "self-test-15-faster"),
    ],
)
def test_anchors_are_githubs_slugs(check_docs: ModuleType, heading: str, anchor: str) -> None:
    assert check_docs.slug(heading) == anchor


def test_a_broken_link_is_reported(
    check_docs: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Top\n\n[ok](#top) [gone](docs/gone.md) `[code](x.md)`\n")
    (tmp_path / "SECURITY.md").write_text("[bad anchor](README.md#nowhere)\n")
    (tmp_path / "docs" / "a.md").write_text(
        "```\n[in a block](nope.md)\n```\n[up](../README.md#top)\n"
    )
    monkeypatch.setattr(check_docs, "ROOT", tmp_path)
    assert check_docs.check_links() == [
        "README.md:3: docs/gone.md: no such file",
        "SECURITY.md:1: README.md#nowhere: no heading with that anchor",
    ]
