"""The people of a building: its registered users, and its settings (which name the default user).

Storage (docs/DESIGN.md): `users` (building, escaped normalised email) with `name` and `companyId`;
`settings` (building, `settings`). One building = one partition per table. Users and settings
live together because each guards the other: the default user must be registered, and cannot be
deleted while it is the default. Bulk import is `shared.directory.userimport`.

Decisions:
- A user's `companyId` must name a company of the building: 422 `unknown_company` (the body is
  well-formed, the reference is not).
- The default user cannot be deleted: 409 `user_is_default`.
- `defaultUserEmail` must be a registered user of the building (HqO's "preconfigured default
  user"): 422 `unknown_user`. null means no default: ambiguous domains stay unattributed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from shared.core.errors import Conflict, NotFound, Unprocessable
from shared.core.etags import IfMatch
from shared.core.paging import Listed, parse_top
from shared.core.validate import Checker, check_building
from shared.directory.attribution import User
from shared.storage import tablestore
from shared.storage.tablestore import TableSource

SETTINGS_ROW_KEY = "settings"


class UserOut(TypedDict):
    email: str
    name: str
    companyId: str


class AutoReleaseOut(TypedDict):
    enabled: bool
    graceMinutes: int
    earlyMinutes: int
    recurringStrikes: int | None


class SettingsOut(TypedDict):
    defaultUserEmail: str | None
    storeExternalSubjects: bool
    autoRelease: AutoReleaseOut
    adHocMinutes: int


# Defaults and bounds (docs/API.md "Limits and defaults"): Robin and Microsoft Places both release
# after 10 minutes; check-in opens 15 minutes before the start, as room panels commonly do.
GRACE_MINUTES = 10
EARLY_MINUTES = 15
AD_HOC_MINUTES = 15
_GRACE_MAX = 240
_EARLY_MAX = 120
_STRIKES_MAX = 52
_AD_HOC_MAX = 1440
# On the settings entity while subjects stored with privacy mode off are still to be removed.
_FORGET_PENDING = "forgetSubjectsPending"
_AUTO_RELEASE_FIELDS = ("enabled", "graceMinutes", "earlyMinutes", "recurringStrikes")


@dataclass(frozen=True)
class AutoRelease:
    """No-show release (issue 15): opt-in; a building's default, which a resource may override."""

    enabled: bool = False
    grace_minutes: int = GRACE_MINUTES  # after the start, without a check-in: released
    early_minutes: int = EARLY_MINUTES  # check-in opens this long before the start
    recurring_strikes: int | None = None  # this many released occurrences in a row end a series


@dataclass(frozen=True)
class BuildingSettings:
    default_user_email: str | None = None
    store_external_subjects: bool = False  # privacy mode: subjects of Outlook bookings not stored
    auto_release: AutoRelease = AutoRelease()
    ad_hoc_minutes: int = AD_HOC_MINUTES  # booked less than this before its start: ad hoc


def auto_release_view(value: AutoRelease) -> AutoReleaseOut:
    return {
        "enabled": value.enabled,
        "graceMinutes": value.grace_minutes,
        "earlyMinutes": value.early_minutes,
        "recurringStrikes": value.recurring_strikes,
    }


def auto_release_from(raw: Any) -> AutoRelease:
    """An AutoRelease stored as JSON by `auto_release_view` (defaults where unreadable)."""
    if not isinstance(raw, Mapping):
        return AutoRelease()
    check = Checker(raw)
    return _auto_release(check) if not check.errors else AutoRelease()


def read_auto_release(check: Checker, field: str) -> AutoRelease | None:
    """The `field` object of a request body (None when absent or null); bad parts are named as
    `field.part` in `check`."""
    raw = check.body.get(field)
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        check.add(field, "must be an object")
        return None
    inner = Checker(raw, prefix=check.prefix + field + ".")
    inner.only(_AUTO_RELEASE_FIELDS)
    value = _auto_release(inner)
    check.errors.extend(inner.errors)
    return value


def _auto_release(check: Checker) -> AutoRelease:
    def number(name: str, minimum: int, maximum: int, default: int) -> int:
        if check.body.get(name) is None:
            return default
        value = check.integer(name, minimum=minimum, maximum=maximum, nullable=False)
        return default if value is None else value

    return AutoRelease(
        enabled=check.boolean("enabled", default=False),
        grace_minutes=number("graceMinutes", 1, _GRACE_MAX, GRACE_MINUTES),
        early_minutes=number("earlyMinutes", 0, _EARLY_MAX, EARLY_MINUTES),
        recurring_strikes=check.integer("recurringStrikes", minimum=1, maximum=_STRIKES_MAX),
    )


# --- users ------------------------------------------------------------------------------------


def user_view(user: User) -> UserOut:
    return {"email": user.email, "name": user.name, "companyId": user.company_id}


def _user_from_entity(entity: Mapping[str, Any]) -> User:
    return User(
        email=tablestore.unescape_key(str(entity["RowKey"])),
        name=str(entity.get("name", "")),
        company_id=str(entity.get("companyId", "")),
    )


def user_entity(building_id: str, user: User) -> dict[str, Any]:
    return {
        "PartitionKey": building_id,
        "RowKey": tablestore.escape_key(user.email),
        "name": user.name,
        "companyId": user.company_id,
        "updatedAt": tablestore.utc_now(),
    }


def read_user(check: Checker, email: Any) -> User:
    """The user fields every writer validates the same way (PUT body + path, an import row)."""
    address = check.email("email", email) or ""
    name = check.name()
    company_id = check.body.get("companyId")
    if company_id is None or company_id == "":
        check.add("companyId", "is required")
    elif not isinstance(company_id, str):
        check.add("companyId", "must be a string")
    else:
        check.path_id("companyId", company_id)
    return User(address, name, company_id if isinstance(company_id, str) else "")


def load_user(tables: TableSource, building_id: str, email: str) -> User | None:
    """A registered user by normalised address (a point read)."""
    entity = tablestore.get_entity(
        tables(tablestore.USERS), building_id, tablestore.escape_key(email)
    )
    return _user_from_entity(entity) if entity is not None else None


def _path_email(raw: str) -> str:
    check = Checker()
    address = check.email("email", raw)
    check.done()
    assert address is not None
    return address


def put_user(
    tables: TableSource, building_id: str, email: str, body: Mapping[str, Any]
) -> tuple[UserOut, bool]:
    check_building(building_id)
    check = Checker(body)
    check.only(("name", "companyId"), ("email",))
    user = read_user(check, email)
    check.done()
    company = tablestore.get_entity(tables(tablestore.COMPANIES), building_id, user.company_id)
    if company is None:
        raise Unprocessable("companyId names no company of this building", reason="unknown_company")
    created = tablestore.put_entity(tables(tablestore.USERS), user_entity(building_id, user))
    return user_view(user), created


def get_user(tables: TableSource, building_id: str, email: str) -> UserOut:
    check_building(building_id)
    user = load_user(tables, building_id, _path_email(email))
    if user is None:
        raise NotFound("No such registered user in this building", reason="user_not_found")
    return user_view(user)


def delete_user(tables: TableSource, building_id: str, email: str) -> None:
    """204 whether or not it existed; 409 `user_is_default` for the building's default user."""
    check_building(building_id)
    address = _path_email(email)
    if load_building_settings(tables, building_id).default_user_email == address:
        raise Conflict(
            "This user is the building's default user; change the settings first",
            reason="user_is_default",
        )
    with tablestore.storage_errors("delete user"):
        tables(tablestore.USERS).delete_entity(building_id, tablestore.escape_key(address))


def list_users(
    tables: TableSource, building_id: str, top: str | None, continuation_token: str | None
) -> Listed[UserOut]:
    """One page of users ordered by (escaped) address; follow the token until None."""
    check_building(building_id)
    page = tablestore.query_page(
        tables(tablestore.USERS),
        "PartitionKey eq @b",
        {"b": building_id},
        top=parse_top(top),
        continuation_token=continuation_token,
        select=["RowKey", "name", "companyId"],
    )
    return Listed([user_view(_user_from_entity(e)) for e in page.items], page.continuation_token)


# --- settings ---------------------------------------------------------------------------------


def settings_view(settings: BuildingSettings) -> SettingsOut:
    return {
        "defaultUserEmail": settings.default_user_email,
        "storeExternalSubjects": settings.store_external_subjects,
        "autoRelease": auto_release_view(settings.auto_release),
        "adHocMinutes": settings.ad_hoc_minutes,
    }


def load_building_settings(tables: TableSource, building_id: str) -> BuildingSettings:
    """The building's settings, defaults where never set."""
    return _settings_from(
        tablestore.get_entity(tables(tablestore.SETTINGS), building_id, SETTINGS_ROW_KEY)
    )


def _settings_from(entity: Mapping[str, Any] | None) -> BuildingSettings:
    if entity is None:
        return BuildingSettings()
    return BuildingSettings(
        default_user_email=entity.get("defaultUserEmail") or None,
        store_external_subjects=bool(entity.get("storeExternalSubjects", False)),
        auto_release=auto_release_from(tablestore.from_json_property(entity.get("autoRelease"))),
        ad_hoc_minutes=int(entity.get("adHocMinutes", AD_HOC_MINUTES)),
    )


def get_building_settings(tables: TableSource, building_id: str) -> SettingsOut:
    return read_building_settings(tables, building_id)[0]


def read_building_settings(tables: TableSource, building_id: str) -> tuple[SettingsOut, str | None]:
    """The settings and their ETag (None while never written: the defaults have no version)."""
    check_building(building_id)
    entity = tablestore.get_entity(tables(tablestore.SETTINGS), building_id, SETTINGS_ROW_KEY)
    return settings_view(_settings_from(entity)), tablestore.version_tag(entity)


def put_building_settings(
    tables: TableSource,
    building_id: str,
    body: Mapping[str, Any],
    *,
    if_match: IfMatch | None = None,
    forget_subjects: Callable[[str], object] | None = None,
) -> tuple[SettingsOut, str]:
    """Replace the settings: omitted fields take their defaults, unknown fields are refused.
    Returns (settings, ETag); with `if_match`, only the version it names is replaced (412).
    When this write turns privacy mode back on (storeExternalSubjects true -> false),
    `forget_subjects(building)` removes the subjects stored meanwhile: after the write (a sync
    round that reads the new setting stores none either), under a `forgetSubjectsPending` mark
    that only its success clears, so a failed scrub (a 503) is done by the retried PUT."""
    check_building(building_id)
    check = Checker(body)
    check.only(("defaultUserEmail", "storeExternalSubjects", "autoRelease", "adHocMinutes"))
    default_user = check.email("defaultUserEmail", body.get("defaultUserEmail"), nullable=True)
    ad_hoc = check.integer("adHocMinutes", minimum=0, maximum=_AD_HOC_MAX)
    settings = BuildingSettings(
        default_user_email=default_user,
        store_external_subjects=check.boolean("storeExternalSubjects", default=False),
        auto_release=read_auto_release(check, "autoRelease") or AutoRelease(),
        ad_hoc_minutes=AD_HOC_MINUTES if ad_hoc is None else ad_hoc,
    )
    check.done()
    if default_user is not None and load_user(tables, building_id, default_user) is None:
        raise Unprocessable(
            "defaultUserEmail must be a registered user of this building", reason="unknown_user"
        )

    def build(current: tablestore.Entity | None) -> tablestore.Entity:
        if if_match is not None:
            if_match.check(tablestore.etag_of(current) if current is not None else None)
        before = current or {}
        forget = not settings.store_external_subjects and bool(
            before.get("storeExternalSubjects") or before.get(_FORGET_PENDING)
        )
        return {
            "defaultUserEmail": settings.default_user_email,
            "storeExternalSubjects": settings.store_external_subjects,
            "autoRelease": tablestore.json_property(auto_release_view(settings.auto_release)),
            "adHocMinutes": settings.ad_hoc_minutes,
            "updatedAt": tablestore.utc_now(),
            **({_FORGET_PENDING: True} if forget else {}),
        }

    table = tables(tablestore.SETTINGS)
    entity, _ = tablestore.replace_optimistic(table, building_id, SETTINGS_ROW_KEY, build)
    if forget_subjects is not None and entity is not None and entity.get(_FORGET_PENDING):
        forget_subjects(building_id)

        def done(current: tablestore.Entity | None) -> tablestore.Entity | None:
            if current is None or not current.get(_FORGET_PENDING):
                return None
            return {k: v for k, v in current.items() if k != _FORGET_PENDING}

        entity = tablestore.replace_optimistic(table, building_id, SETTINGS_ROW_KEY, done)[0]
    return settings_view(settings), tablestore.version_tag(entity) or ""
