"""Attribution for one building from storage: the rule of `shared.directory.attribution` bound to
the building's registered users (point reads on demand), companies and settings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from shared.core.addresses import normalise_email
from shared.directory.attribution import Attribution, Company, User, attribute
from shared.directory.companies import load_companies
from shared.directory.people import BuildingSettings, load_building_settings, load_user
from shared.storage.tablestore import TableSource


class StoredUsers(Mapping[str, User]):
    """A building's registered users as `attribute()` reads them: point reads on demand, each
    address read at most once per instance (absent ones too). Buildings import tens of thousands
    of users; a sync round meets a handful of organizers, so loading them all would be waste.

    Only `get` / `[]` look in storage; iterating and `len` cover the addresses read so far.
    """

    def __init__(self, tables: TableSource, building_id: str) -> None:
        self._tables = tables
        self._building_id = building_id
        self._seen: dict[str, User | None] = {}

    def __getitem__(self, email: str) -> User:
        if email not in self._seen:
            address = normalise_email(email)
            self._seen[email] = (
                load_user(self._tables, self._building_id, address) if address else None
            )
        user = self._seen[email]
        if user is None:
            raise KeyError(email)
        return user

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self._seen.items() if v is not None])

    def __len__(self) -> int:
        return sum(1 for v in self._seen.values() if v is not None)


@dataclass(frozen=True)
class BuildingAttributor:
    """The attribution rule bound to one building's users, companies and settings (read once)."""

    users: StoredUsers
    companies: tuple[Company, ...]
    settings: BuildingSettings

    def __call__(self, email: str | None) -> Attribution:
        return attribute(
            email,
            users=self.users,
            companies=self.companies,
            default_user_email=self.settings.default_user_email,
        )


def load_attributor(tables: TableSource, building_id: str) -> BuildingAttributor:
    """Attribution for one building: companies and settings now, users on demand."""
    return BuildingAttributor(
        StoredUsers(tables, building_id),
        tuple(load_companies(tables, building_id)),
        load_building_settings(tables, building_id),
    )
