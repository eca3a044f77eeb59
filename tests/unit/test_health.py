"""Health checks run concurrently and are bounded in time."""

from __future__ import annotations

import threading
import time

from shared.health import run_checks


def test_all_ok() -> None:
    assert run_checks({"a": lambda: None, "b": lambda: 1}) == {
        "status": "ok",
        "components": {"a": "ok", "b": "ok"},
    }


def test_a_failing_check_degrades_only_itself() -> None:
    def boom() -> None:
        raise ConnectionError("refused")

    report = run_checks({"tables": lambda: None, "graph": boom})
    assert report == {"status": "degraded", "components": {"tables": "ok", "graph": "degraded"}}


def test_a_hung_check_costs_at_most_the_deadline() -> None:
    release = threading.Event()
    started = time.monotonic()
    report = run_checks({"slow": lambda: release.wait(5), "fast": lambda: None}, deadline_s=0.3)
    elapsed = time.monotonic() - started
    release.set()
    assert report["components"] == {"slow": "degraded", "fast": "ok"}
    assert elapsed < 1.5
