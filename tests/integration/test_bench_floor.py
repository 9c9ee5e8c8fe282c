"""The benchmark's floor measurement drives the runtime directly (an empty container built
when its test comes, and prepared ones through a zygote): it must keep working as the
runtime changes. No timing is checked here; `tox -e bench` measures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


def test_the_floor_measurement_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("rootless_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rootless_bench", bench)  # its dataclasses look it up
    monkeypatch.syspath_prepend(str(BENCH.parent))  # its sibling modules, as when run
    spec.loader.exec_module(bench)
    done = subprocess.run(
        [sys.executable, "-c", bench.FLOOR, "0", "3"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures) == {"fork", "built", "prepared"}
    assert all(seconds > 0 for seconds in figures.values())
