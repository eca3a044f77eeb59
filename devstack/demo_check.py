"""`make demo`'s last step: the go-live check (issue 14), started through the API and printed step
by step as each one completes (the demo polls `GET /buildings/{b}/checks/{id}`)."""

from __future__ import annotations

import time
from typing import Any

import httpx

WAIT_S = 120.0


def go_live(api: httpx.Client, b: str) -> bool:
    """Start a check of every mapped resource of `b` (`buildings/<id>`), print its steps as they
    complete; True when it passed and left nothing behind."""
    print("\n== 13. Go-live check: book, sync back, cancel, on the real path; nothing left behind")
    started = api.post(f"{b}/checks", json={})
    if started.status_code != 202:
        print(f"   !! POST {b}/checks -> {started.status_code}: {started.text[:500]}")
        return False
    check_id = started.json()["id"]
    print(f"   check {check_id} queued (202)", flush=True)
    shown: set[tuple[str, str]] = set()
    deadline = time.monotonic() + WAIT_S
    check: dict[str, Any] = started.json()
    while time.monotonic() < deadline:
        check = api.get(f"{b}/checks/{check_id}").json()
        for resource in check.get("resources", []):
            for step in resource["steps"]:
                key = (resource["resourceId"], step["name"])
                if key in shown:
                    continue
                shown.add(key)
                print(f"   {resource['resourceId']} {step['name']}: {_line(step)}", flush=True)
        if check["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    cleanup = check.get("cleanup") or {}
    print(f"   result: {check['status']} in {(check.get('durationMs') or 0) / 1000:.1f} s, "
          f"clean-up {cleanup.get('status', '?')}")  # fmt: skip
    return bool(check["status"] == "passed" and cleanup.get("status") == "clean")


def _line(step: dict[str, Any]) -> str:
    text = f"{step['status']} ({step['durationMs']} ms)"
    lag = step.get("detail", {}).get("lagSeconds")
    if lag is not None:
        text += f", lag {lag:.2f} s"
    if step["status"] != "passed":
        text += f" - {step.get('reason')}: {step.get('message')} Fix: {step.get('fix')}"
    return text
