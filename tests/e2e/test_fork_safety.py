"""Containers start safely when pytest has other threads.

A raw clone(2) copies another thread's malloc lock into the child already held, and the
child's next fork then deadlocks. With a thread in the host allocating without the GIL
(sqlite does), about one container in twenty used to hang; now each starts from a
single-threaded copy of pytest.
"""

from __future__ import annotations

import pytest


def test_a_busy_thread_in_pytest_does_not_hang_containers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sqlite3, threading
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def busy_thread():
            stop = threading.Event()

            def work():
                db = sqlite3.connect(":memory:")
                db.execute("create table t(x)")
                while not stop.is_set():
                    db.executemany("insert into t values (?)", [(i,) for i in range(200)])
                    db.execute("select sum(x) from t").fetchone()
                    db.execute("delete from t")

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            yield
            stop.set()
            thread.join()

        @pytest.mark.parametrize("i", range(150))
        @pytest.mark.isolated(timeout=10)
        def test_many(i):
            import threading
            assert threading.active_count() == 1  # threads do not survive the fork
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", timeout=300)
    result.assert_outcomes(passed=150)
