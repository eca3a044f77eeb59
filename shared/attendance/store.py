"""The attendance table's writes: insert-if-absent and ETag-guarded replace (model.py's states).

Both answer whether this writer won; neither ever overwrites what another writer stored, which is
what makes a check-in racing the release timer, or two timer instances, come out exactly once.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.attendance.model import Attendance, from_entity, partition_key, row_key, to_entity
from shared.availability.busy import BusyBlock
from shared.core.errors import Conflict
from shared.storage import tablestore


class AttendanceTable:
    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, block: BusyBlock | Attendance) -> tuple[Attendance, str] | None:
        entity = tablestore.get_entity(
            self._table,
            partition_key(block.building_id, block.start),
            row_key(block.resource_id, block.block_id),
        )
        if entity is None:
            return None
        return from_entity(block.building_id, entity), str(tablestore.etag_of(entity))

    def insert(self, record: Attendance) -> bool:
        """Store the first record of a block; False when one exists (another writer won)."""
        try:
            with tablestore.storage_errors("insert attendance"):
                self._table.create_entity(to_entity(record))
        except Conflict as err:
            if err.reason == "exists":
                return False
            raise
        return True

    def replace(self, record: Attendance, etag: str) -> bool:
        """Replace the version read (`etag`); False when it changed meanwhile."""
        try:
            with tablestore.storage_errors("update attendance"):
                self._table.update_entity(
                    to_entity(record),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except Conflict as err:
            if err.reason == "modified":
                return False
            raise
        return True
