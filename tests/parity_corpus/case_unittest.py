# ruff: noqa
# A parity corpus file: its failures are on purpose (see tests/e2e/test_parity.py).
"""unittest.TestCase tests, which pytest runs through its own unittest plugin."""

import unittest


class Case(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        print("setUpClass output")

    def setUp(self):
        print("setUp output")

    def tearDown(self):
        print("tearDown output")

    def test_pass(self):
        self.assertEqual(1, 1)

    def test_fail(self):
        self.assertEqual({"a": 1}, {"a": 2})

    def test_error(self):
        raise RuntimeError("unittest error")

    @unittest.skip("unittest skip")
    def test_skip(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertTrue(False)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass


class TearDownFails(unittest.TestCase):
    def tearDown(self):
        raise ValueError("tearDown boom")

    def test_a(self):
        pass
