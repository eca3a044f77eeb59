"""examples/portal_client.py, the portal client written from README.md and docs/API.md alone, does
the whole flow against the local stack (issue 22). It runs as its own process, as a portal would,
reading only the stack's endpoints.json; run twice, as a developer reruns it."""

from __future__ import annotations

import ast
import ssl
import subprocess
import sys
import uuid

import httpx

from devstack.procs import REPO_ROOT
from devstack.stack import Stack
from tests.e2e.booking_fixtures import connect_application
from tests.e2e.connect_fixtures import fresh_tenant

CLIENT = REPO_ROOT / "examples" / "portal_client.py"


def test_the_example_imports_nothing_of_this_repository() -> None:
    tree = ast.parse(CLIENT.read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"shared", "devstack", "functions", "tests", "function_app"}, imported


def test_the_portal_client_does_the_whole_flow(
    stack: Stack, api: httpx.Client, anonymous: httpx.Client
) -> None:
    building = f"portal-{uuid.uuid4().hex[:10]}"
    verify = ssl.create_default_context(cafile=stack.endpoints["caBundle"])
    with httpx.Client(verify=verify, trust_env=False, timeout=30) as browser:
        # What the console (an admin) does first: connect the building to a tenant.
        connect_application(stack, api, anonymous, browser, building, fresh_tenant(stack))
    endpoints = stack.state_dir / "endpoints.json"
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, str(CLIENT), "--endpoints", str(endpoints), "--building", building],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
        )
        assert done.returncode == 0, f"run {run}:\n{done.stdout}\n{done.stderr}"
        out = done.stdout
        assert "stale If-Match: 412 precondition_failed" in out, out
        assert out.rstrip().endswith("done"), out
    # What it left behind is what API.md says it did: the resource, mapped and synced.
    resource = api.get(f"buildings/{building}/resources/portal-example-room").json()
    assert resource["sync"]["calendar"]["mailbox"], resource
