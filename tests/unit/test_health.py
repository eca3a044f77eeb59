"""Health checks run concurrently and are bounded in time."""

from __future__ import annotations

import os
import threading

from shared.api.health import run_checks


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


def test_a_hung_check_does_not_hold_up_the_report() -> None:
    release, finished = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(30)
        finished.set()

    report = run_checks({"slow": slow, "fast": lambda: None}, deadline_s=0.3)
    # The report came back while the check still hung: it did not wait for it.
    assert not finished.is_set()
    release.set()
    assert report["components"] == {"slow": "degraded", "fast": "ok"}


def test_unusable_settings_degrade_every_component_instead_of_failing(monkeypatch) -> None:
    # After the first deploy BB_CLIENT_ID is still empty (infra/README.md): health must still answer.
    from shared import wiring
    from shared.core.settings import get_settings

    for name in list(os.environ):
        if name.startswith(("BB_", "AzureWebJobs", "AZURE_")):
            monkeypatch.delenv(name)
    wiring.reset()
    try:
        report = run_checks(wiring.health_checks())
    finally:
        get_settings.cache_clear()
        wiring.reset()
    assert report == {
        "status": "degraded",
        "components": dict.fromkeys(("tables", "queues", "keyVault", "graph"), "degraded"),
    }
