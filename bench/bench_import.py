"""Import cost of the app (what a cold start pays before the first invocation).

Runs `python -X importtime -c "import function_app"` in fresh interpreters, with no app settings in the
environment (importing must not need them), and prints the cumulative import time of function_app,
its heaviest imports, and the median wall time of a bare import over several runs.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("BB_", "AzureWebJobs", "AZURE_"))
    }


def main() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import function_app"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = []
    for line in out.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)), match.group(4)))
    total = next(cum for cum, _, name in rows if name == "function_app")
    top = sorted(((cum, name) for cum, depth, name in rows if depth <= 3), reverse=True)[:8]

    walls = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import function_app"], cwd=ROOT, env=_env(), check=True
        )
        walls.append(time.perf_counter() - t0)
    baseline = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=_env(), check=True)
        baseline.append(time.perf_counter() - t0)

    print(f"import function_app (cumulative, -X importtime): {total / 1000:.1f} ms")
    print("heaviest top-level imports:")
    for cum, name in top:
        print(f"  {cum / 1000:8.1f} ms  {name}")
    print(
        f"fresh interpreter + import, median of {RUNS}: {statistics.median(walls) * 1000:.0f} ms "
        f"(bare interpreter: {statistics.median(baseline) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
