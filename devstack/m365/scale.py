"""Scenarios of many rooms, generated rather than written out (issue 17, bench/bench_scale.py):
the demo scenario with `rooms` more room mailboxes in room lists of `per_list`, in the demo tenant
(the stack's tenant), so a 1,000-room tenant is one function call and no 1,000-row file.

Rooms are `scale0000@` … in lists `scale-list-00@` …, on floors of 50; `python -m
devstack.m365.scale 1000 > rooms.json` writes one for `--scenario`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parent.parent / "scenarios" / "demo.json"
ROOMS_PER_FLOOR = 50


def room_nick(n: int) -> str:
    return f"scale{n:04d}"


def scaled_scenario(rooms: int, per_list: int = 100, base: Path = DEMO) -> dict[str, Any]:
    """The demo scenario plus `rooms` rooms in ceil(rooms / per_list) room lists."""
    scenario: dict[str, Any] = copy.deepcopy(json.loads(base.read_text()))
    tenant = scenario["tenants"][0]
    for n in range(rooms):
        tenant["users"].append(
            {
                "mailNickname": room_nick(n),
                "displayName": f"Tower Room {n // ROOMS_PER_FLOOR + 1}.{n % ROOMS_PER_FLOOR:02d}",
                "type": "room",
                "room": {"capacity": 4 + n % 9, "building": "Tower",
                         "floorNumber": n // ROOMS_PER_FLOOR + 1},
            }
        )  # fmt: skip
    for start in range(0, rooms, per_list):
        tenant["roomLists"].append(
            {
                "mailNickname": f"scale-list-{start // per_list:02d}",
                "displayName": f"Tower rooms {start + 1}-{min(rooms, start + per_list)}",
                "rooms": [room_nick(n) for n in range(start, min(rooms, start + per_list))],
            }
        )
    return scenario


if __name__ == "__main__":
    json.dump(scaled_scenario(int(sys.argv[1]) if len(sys.argv) > 1 else 1000), sys.stdout)
