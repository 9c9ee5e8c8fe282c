# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""unittest's subTest: pytest 9 reports each subtest in the middle of the call phase."""

import unittest


class Case(unittest.TestCase):
    def test_subtests(self):
        for i in range(3):
            with self.subTest(i=i):
                print(f"subtest {i}")
                self.assertLess(i, 2)

    def test_subtests_pass(self):
        for i in range(2):
            with self.subTest("named", i=i):
                pass
