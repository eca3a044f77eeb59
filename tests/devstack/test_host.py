"""The local Functions host (devstack/host) running tests/hostapp over real HTTP and Azurite.

One host process serves the module; tests talk to it with httpx and the real azure-storage-queue
client, and read what timer and queue functions record in JSON-lines files.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.host import HostProcess, start_host_in_thread, start_host_process
from devstack.procs import REPO_ROOT
from tests.waiting import wait_for

HOSTAPP = REPO_ROOT / "tests" / "hostapp"
WORK_QUEUE = "hostapp-work"
THREADS = 12


def host_settings(work_queue: str = WORK_QUEUE) -> dict[str, str]:
    # Passed through --settings: the app must see them in os.environ at import time.
    return {
        "TICK_SCHEDULE": "*/1 * * * * *",
        "SLOW_TICK_SCHEDULE": "* * * * * *",
        "HOSTAPP_GREETING": "hello-from-settings",
        "WORK_QUEUE": work_queue,
    }


def host_env(azurite: str, workdir: Path) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite,
        "WORK_LOG": str(workdir / "work.jsonl"),
        "TICK_LOG": str(workdir / "tick.jsonl"),
        "SLOW_LOG": str(workdir / "slow.jsonl"),
        "PYTHON_THREADPOOL_THREAD_COUNT": str(THREADS),
        # host.json says 10 s; the Azure override mechanism makes retries quick here.
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
    }


@pytest.fixture(scope="module")
def host(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    workdir = tmp_path_factory.mktemp("host")
    running = start_host_process(
        "function_app:app",
        app_dir=HOSTAPP,
        settings=host_settings(),
        env=host_env(azurite, workdir),
        workdir=workdir,
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(host: HostProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.base_url + "/", trust_env=False, timeout=15) as c:
        yield c


def queue(azurite: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        azurite,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def work_log(host: HostProcess) -> Path:
    return host.workdir / "work.jsonl"


# -- start-up ---------------------------------------------------------------------------------


def test_ready_file_and_keys_file(host: HostProcess) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", host.base_url)
    assert host.child.info["pid"] == host.pid
    keys_file = host.workdir / "host-keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert json.loads(keys_file.read_text())["masterKey"] == host.master_key


def test_settings_reach_the_environment_before_the_app_is_imported(client: httpx.Client) -> None:
    response = client.get("noroute")  # no route in the decorator: the function name is the route
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"  # a str return
    assert response.text == "greeting=hello-from-settings"


def test_start_fails_loudly_when_a_schedule_setting_is_missing(
    azurite: str, tmp_path: Path
) -> None:
    settings = host_settings()
    del settings["TICK_SCHEDULE"]
    with pytest.raises(RuntimeError, match=r"exited with 1[\s\S]*TICK_SCHEDULE"):
        start_host_process(
            app_dir=HOSTAPP, settings=settings, env=host_env(azurite, tmp_path), workdir=tmp_path
        )


# -- HTTP -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "route"),
    [
        ("items/42", "int", {"id": "42"}),
        ("items/abc", "alpha", {"name": "abc"}),
        ("items/special", "literal", {}),  # the literal route beats {name:alpha}
        (
            "lookup/5f0c7c1e-7d0f-4a3b-9a51-0c1f1f1f1f1f",
            "guid",
            {"key": "5f0c7c1e-7d0f-4a3b-9a51-0c1f1f1f1f1f"},
        ),
        ("pages", None, {}),
        ("pages/3", None, {"page": "3"}),
        ("files/a/b%2Fc/d.txt", None, {"path": "a/b/c/d.txt"}),
        # An encoded line break is a character like any other (the app answers, not a router).
        ("files/a%0Ab", None, {"path": "a\nb"}),
    ],
)
def test_route_templates(
    client: httpx.Client, path: str, kind: str | None, route: dict[str, str]
) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] == route
    if kind is not None:
        assert body["kind"] == kind


@pytest.mark.parametrize(
    "path", ["items/4x2", "items/99999999999", "lookup/nope", "missing", "echo/x"]
)
def test_unmatched_paths_are_404(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_route_prefix_is_required(host: HostProcess) -> None:
    root = host.base_url.removesuffix("/api")
    assert httpx.get(f"{root}/items/42", trust_env=False).status_code == 404


def test_wrong_method_is_405_with_allow(client: httpx.Client) -> None:
    response = client.get("echo")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, PUT"
    assert client.delete("items/42").status_code == 405


def test_request_and_response_mapping(client: httpx.Client) -> None:
    response = client.post(
        "echo?a=1&a=2&b=x%20y", content=b"hello body", headers={"X-Test": "header value"}
    )
    assert response.status_code == 201
    assert response.headers["x-echo"] == "yes"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["method"] == "POST"
    assert body["url"].endswith("/api/echo?a=1&a=2&b=x%20y")
    assert body["params"] == {"a": "1,2", "b": "x y"}
    assert body["header"] == "header value"
    assert body["body"] == "hello body"
    assert client.put("echo", content=b"").json()["method"] == "PUT"


def test_no_output_is_204_and_a_failure_is_500_without_details(
    client: httpx.Client, host: HostProcess
) -> None:
    assert client.get("nothing").status_code == 204
    response = client.get("boom")
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    # ... but the log has it.
    assert "secret detail that must not leak" in (host.workdir / "host.log").read_text()


def test_context_parameter(client: httpx.Client) -> None:
    body = client.get("context").json()
    assert body["function_name"] == "with_context"
    uuid.UUID(body["invocation_id"])


def test_auth_levels(client: httpx.Client, host: HostProcess) -> None:
    assert client.get("secure/function").status_code == 401
    assert client.get("secure/function", params={"code": "wrong"}).status_code == 401
    assert client.get("secure/function", params={"code": host.function_key}).text == "function ok"
    assert (
        client.get("secure/function", headers={"x-functions-key": host.master_key}).status_code
        == 200
    )

    assert client.get("secure/admin", params={"code": host.function_key}).status_code == 401
    assert (
        client.get("secure/admin", headers={"x-functions-key": host.master_key}).text == "admin ok"
    )
    assert client.get("items/42").status_code == 200  # anonymous


def test_admin_api(host: HostProcess) -> None:
    root = host.base_url.removesuffix("/api")
    master = {"x-functions-key": host.master_key}
    with httpx.Client(base_url=root, trust_env=False, timeout=10) as admin:
        assert admin.get("/admin/host/status").status_code == 401
        assert (
            admin.get(
                "/admin/host/status", headers={"x-functions-key": host.function_key}
            ).status_code
            == 401
        )
        assert admin.get("/admin/host/status", headers=master).json()["state"] == "Running"
        functions = {f["name"]: f for f in admin.get("/admin/functions", headers=master).json()}
        assert functions["item_by_id"]["route"] == "items/{id:int}"
        assert functions["tick"]["schedule"] == "*/1 * * * * *"
        assert functions["work"]["queueName"] == WORK_QUEUE
        # Run a queue function by hand, as the portal's "Test/Run" does.
        response = admin.post("/admin/functions/work", headers=master, json={"input": "admin-run"})
        assert response.status_code == 202
        assert admin.post("/admin/functions/nope", headers=master, json={}).status_code == 404
    wait_for(
        lambda: any(r["body"] == "admin-run" for r in records(work_log(host))),
        5,
        "admin-run invocation",
    )


def test_invocations_run_concurrently(host: HostProcess) -> None:
    count = 8  # within THREADS: sync functions share the worker's thread pool

    async def hit_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=host.base_url + "/", trust_env=False, timeout=15
        ) as c:
            return await asyncio.gather(
                *[c.get("slow") for _ in range(count)], *[c.get("slow-async") for _ in range(count)]
            )

    responses = asyncio.run(hit_all())
    assert [r.status_code for r in responses] == [200] * (2 * count)
    # Each invocation logged when it began and ended: how many ran at the same moment?
    runs = [r for r in records(host.workdir / "slow.jsonl") if "ended" in r]
    assert len(runs) == 2 * count
    together = max(sum(o["began"] <= r["began"] < o["ended"] for o in runs) for r in runs)
    assert together >= count, f"at most {together} of {2 * count} invocations ran at once"


def test_every_invocation_is_logged_with_outcome_and_duration(
    client: httpx.Client, host: HostProcess
) -> None:
    client.post("echo", content=b"log me")
    log_file = host.workdir / "host.log"
    wait_for(lambda: "echo handled" in log_file.read_text(), 5, "the echo log line")
    log = log_file.read_text()
    assert re.search(r"Executed 'Functions\.echo' \(Succeeded, trigger=http.*duration=\d+ms\)", log)
    assert re.search(r"Executed 'Functions\.boom' \(Failed, trigger=http", log)
    # The function's own logging is visible and tagged with its invocation.
    assert re.search(r"hostapp \[echo:[0-9a-f]{8}\]: echo handled POST", log)


# -- timers -----------------------------------------------------------------------------------


def test_timers_fire_on_schedule_on_startup_and_past_due(host: HostProcess) -> None:
    tick_log = host.workdir / "tick.jsonl"

    def enough() -> list[dict[str, Any]] | None:
        entries = records(tick_log)
        names = [e["name"] for e in entries]
        ready = names.count("tick") >= 3 and names.count("interval_tick") >= 2
        past_due = any(e["name"] == "slow_tick" and e["past_due"] for e in entries)
        return entries if ready and past_due else None

    entries = wait_for(enough, 10, "timer firings")
    ticks = [e for e in entries if e["name"] == "tick"]
    assert not any(e["past_due"] for e in ticks)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(ticks)]
    assert all(0.5 < gap < 1.5 for gap in gaps), gaps
    # Cron seconds fire on the second boundary.
    assert all(abs(e["at"] - round(e["at"])) < 0.3 for e in ticks)
    assert [e["name"] for e in entries].count("startup_once") == 1
    # slow_tick runs 1.5 s on a 1 s schedule: its first run is on time, a later one past due.
    slow = [e for e in entries if e["name"] == "slow_tick"]
    assert slow[0]["past_due"] is False


# -- queues -----------------------------------------------------------------------------------


def test_queue_retries_then_poison(host: HostProcess, azurite: str) -> None:
    tag = uuid.uuid4().hex[:6]
    flaky, poison = f"flaky-{tag}", f"poison-{tag}"
    work = queue(azurite, WORK_QUEUE)
    work.send_message(flaky)
    work.send_message(poison)
    poison_queue = queue(azurite, f"{WORK_QUEUE}-poison")

    def poisoned() -> list[str]:
        try:
            return [
                m.content
                for m in poison_queue.peek_messages(max_messages=32)
                if m.content == poison
            ]
        except Exception:  # the host creates the poison queue on first use
            return []

    wait_for(poisoned, 20, "the poison message")
    attempts = records(work_log(host))
    poison_attempts = [a for a in attempts if a["body"] == poison]
    flaky_attempts = [a for a in attempts if a["body"] == flaky]
    assert [a["dequeue_count"] for a in poison_attempts] == [1, 2, 3, 4, 5]
    assert all(a["outcome"] == "failed" for a in poison_attempts)
    assert [(a["dequeue_count"], a["outcome"]) for a in flaky_attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "ok"),
    ]
    assert all(a["has_times"] and a["has_receipt"] for a in poison_attempts + flaky_attempts)
    assert len({a["id"] for a in poison_attempts}) == 1
    # A failed message comes back after visibilityTimeout (1 s here), not at once.
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(poison_attempts)]
    assert all(gap >= 0.9 for gap in gaps), gaps

    # Both leave the work queue (the flaky one succeeded, the poison one moved).
    def drained() -> bool:
        leftover = [m.content for m in work.peek_messages(max_messages=32)]
        return flaky not in leftover and poison not in leftover

    wait_for(drained, 5, "the work queue to drop both messages")


def test_queue_output_from_http_is_picked_up_quickly(
    client: httpx.Client, host: HostProcess
) -> None:
    tag = uuid.uuid4().hex[:6]
    bodies = [f"out-{tag}-1", f"out-{tag}-2"]
    started = time.time()
    assert client.post("enqueue", json=bodies).status_code == 202

    def done() -> list[dict[str, Any]]:
        return [r for r in records(work_log(host)) if r["body"] in bodies and r["outcome"] == "ok"]

    # The host wakes its own listener when it writes to that queue: both are done before the
    # listener's next poll (maxPollingInterval, 1 s) would even have looked.
    left = 1.0 - (time.time() - started)
    wait_for(lambda: len(done()) == 2, left, "the enqueued messages, before the next poll")


def test_queue_trigger_with_return_queue_output(host: HostProcess, azurite: str) -> None:
    tag = uuid.uuid4().hex[:6]
    queue(azurite, "hostapp-fanout").send_message(f"a-{tag},b-{tag}")
    wait_for(
        lambda: (
            {f"a-{tag}", f"b-{tag}"}
            <= {r["body"] for r in records(work_log(host)) if r["outcome"] == "ok"}
        ),
        8,
        "the fanned-out messages",
    )


# -- shutdown and the in-process host ----------------------------------------------------------


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(azurite: str, tmp_path: Path) -> None:
    # A host of its own (own work queue), so stopping it leaves the module's host alone.
    second = start_host_process(
        app_dir=HOSTAPP,
        settings=host_settings(work_queue=f"hostapp-work-{uuid.uuid4().hex[:6]}"),
        env=host_env(azurite, tmp_path),
        workdir=tmp_path,
    )
    outcome: dict[str, Any] = {}
    slow_log = tmp_path / "slow.jsonl"

    def call_slow() -> None:
        try:
            outcome["response"] = httpx.get(f"{second.base_url}/slow", trust_env=False, timeout=10)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    try:
        caller = threading.Thread(target=call_slow)
        caller.start()
        wait_for(slow_log.exists, 5, "the slow request to reach its function")
        # A short grace period: a stop that hung until SIGKILL would not exit 0.
        returncode = second.stop(timeout=5)
        caller.join(10)
    finally:
        second.stop()
    assert returncode == 0
    assert "error" not in outcome, outcome
    assert outcome["response"].status_code == 200
    assert "Functions host stopped" in (tmp_path / "host.log").read_text()


def test_in_process_host(tmp_path: Path) -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="hello/{name}")
    def hello(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"hello {req.route_params['name']}")

    with start_host_in_thread(app, app_dir=tmp_path) as running:
        response = httpx.get(f"{running.base_url}/hello/world", trust_env=False)
        assert response.status_code == 200
        assert response.text == "hello world"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.base_url}/hello/again", trust_env=False)


def test_a_function_disabled_by_app_setting_is_not_run(tmp_path: Path) -> None:
    """`AzureWebJobs.<name>.Disabled` as in Azure: its route answers 404, its timer never fires;
    the app's other functions run (bench_webhook splits the app across two hosts with it)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    fired: list[str] = []

    @app.route(route="on")
    def on(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("on")

    @app.route(route="off")
    def off(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("off")

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=True)
    def tick(timer: func.TimerRequest) -> None:
        fired.append("tick")

    environ = {"AzureWebJobs.off.Disabled": "True", "AzureWebJobs.tick.Disabled": "1"}
    with start_host_in_thread(app, app_dir=tmp_path, environ=environ) as running:
        assert httpx.get(f"{running.base_url}/on", trust_env=False).text == "on"
        assert httpx.get(f"{running.base_url}/off", trust_env=False).status_code == 404
        time.sleep(1.5)
    assert fired == []
