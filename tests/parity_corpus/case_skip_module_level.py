# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""pytest.skip(allow_module_level=True) at import: the module is one skip."""

import pytest

pytest.skip("skipped at import", allow_module_level=True)


def test_never():
    pass
