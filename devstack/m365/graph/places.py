"""Places API: rooms and room lists of the tenant, keyed by email (ids are not stable on Graph),
and the Microsoft Places hierarchy: buildings, floors, sections, desks and workspaces.

`/places/microsoft.graph.{room,roomlist,building,floor,section,desk,workspace}`,
`/places/{roomListEmail}/microsoft.graph.roomlist/rooms` (the list's email, not its id),
`/places/{id|email}`; `$top`, `$skip`, `$count=true`, `$select`. Default pages as place-list.md
says: "up to 100 rooms, workspaces, and room lists per page, and 1,000 buildings, floors,
sections, and desks per page" (L:/graph/api/place-list). Every place has `parentId` (a desk's
section, a section's floor, a floor's building); desks and workspaces have a `mode` (the
placeMode subtypes of the v1.0 metadata) and, when bookable, a mailbox.
"""

from __future__ import annotations

from typing import Any

from .errors import GraphError, item_not_found
from .store import GraphState

DEFAULT_PAGE = 100
BIG_PAGE = 1000  # buildings, floors, sections, desks (place-list.md)
PAGE_SIZES = {
    "microsoft.graph.room": DEFAULT_PAGE,
    "microsoft.graph.roomlist": DEFAULT_PAGE,
    "microsoft.graph.workspace": DEFAULT_PAGE,
    "microsoft.graph.building": BIG_PAGE,
    "microsoft.graph.floor": BIG_PAGE,
    "microsoft.graph.section": BIG_PAGE,
    "microsoft.graph.desk": BIG_PAGE,
}
_ODATA_NAMES = {
    "building": "building", "floor": "floor", "section": "section", "desk": "desk",
    "workspace": "workspace",
}  # fmt: skip
_MODE_TYPES = {
    "reservable": "reservablePlaceMode",
    "dropIn": "dropInPlaceMode",
    "assigned": "assignedPlaceMode",
    "unavailable": "unavailablePlaceMode",
}
_EMPTY_ADDRESS = {"street": "", "city": "", "state": "", "countryOrRegion": "", "postalCode": ""}


def room_json(user: Any) -> dict[str, Any]:
    room = dict(user.room or {})
    address = room.get("address") or {}
    return {
        "@odata.type": "#microsoft.graph.room",
        "id": str(room.get("placeId") or user.id),
        "placeId": str(room.get("placeId") or user.id),
        "emailAddress": user.mail,
        "displayName": user.display_name,
        "address": {
            "street": address.get("street", ""),
            "city": address.get("city", ""),
            "state": address.get("state", ""),
            "countryOrRegion": address.get("countryOrRegion", ""),
            "postalCode": address.get("postalCode", ""),
        },
        "geoCoordinates": room.get("geoCoordinates"),
        "phone": room.get("phone", ""),
        "nickname": room.get("nickname", user.display_name),
        "label": room.get("label", ""),
        "capacity": room.get("capacity"),
        "building": room.get("building"),
        "floorLabel": room.get("floorLabel"),
        "floorNumber": room.get("floorNumber"),
        "isWheelChairAccessible": bool(room.get("isWheelChairAccessible", False)),
        "bookingType": room.get("bookingType", "standard"),
        "tags": list(room.get("tags", [])),
        "audioDeviceName": room.get("audioDeviceName"),
        "videoDeviceName": room.get("videoDeviceName"),
        "displayDeviceName": room.get("displayDeviceName"),
        "teamsEnabledState": room.get("teamsEnabledState", "unknown"),
        "parentId": room.get("parentId"),
    }


def _mode_json(tenant: Any, data: dict[str, Any]) -> dict[str, Any] | None:
    mode = data.get("mode")
    if mode is None:
        return None
    out: dict[str, Any] = {"@odata.type": "#microsoft.graph." + _MODE_TYPES[str(mode)]}
    if mode == "assigned":
        user = tenant.users.get(data.get("assignedTo"))
        out["assignedUserId"] = user.id if user else None
        out["assignedUserEmailAddress"] = user.mail if user else None
    elif mode == "unavailable":
        out["reason"] = data.get("reason")
    return out


def place_json(tenant: Any, place: Any) -> dict[str, Any]:
    """A building, floor, section, desk or workspace in its v1.0 shape."""
    data = place.data
    out: dict[str, Any] = {
        "@odata.type": "#microsoft.graph." + _ODATA_NAMES[place.type],
        "id": place.id,
        "placeId": place.id,
        "displayName": place.display_name,
        "parentId": place.parent_id,
        "address": {**_EMPTY_ADDRESS, **(data.get("address") or {})},
        "geoCoordinates": data.get("geoCoordinates"),
        "phone": data.get("phone", ""),
        "label": data.get("label", ""),
        "tags": list(data.get("tags", [])),
        "isWheelChairAccessible": bool(data.get("isWheelChairAccessible", False)),
    }
    mailbox = tenant.users.get(place.mailbox) if place.mailbox else None
    if place.type == "building":
        out.update(resourceLinks=[], wifiState=data.get("wifiState", "unknown"))
    elif place.type == "floor":
        out["sortOrder"] = data.get("sortOrder")
    elif place.type == "desk":
        out.update(
            displayDeviceName=data.get("displayDeviceName"),
            heightAdjustableState=data.get("heightAdjustableState", "unknown"),
            mailboxDetails=(
                {"emailAddress": mailbox.mail, "externalDirectoryObjectId": mailbox.id}
                if mailbox is not None
                else None
            ),
            mode=_mode_json(tenant, data),
            servicePlans=[],
        )
    elif place.type == "workspace":
        out.update(
            capacity=data.get("capacity"),
            displayDeviceName=data.get("displayDeviceName"),
            emailAddress=mailbox.mail if mailbox is not None else None,
            mode=_mode_json(tenant, data),
            nickname=data.get("nickname", place.display_name),
        )
    return out


def room_list_json(rl: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.roomList",
        "id": rl.id,
        "placeId": rl.id,
        "displayName": rl.display_name,
        "address": {"street": "", "city": "", "state": "", "countryOrRegion": "", "postalCode": ""},
        "geoCoordinates": None,
        "phone": "",
        "emailAddress": rl.email_address,
        "tags": [],
    }


def _page(
    state: GraphState,
    items: list[dict[str, Any]],
    query: dict[str, str],
    base: str,
    context: str,
    page_size: int = DEFAULT_PAGE,
) -> dict[str, Any]:
    low = {k.lower(): v for k, v in query.items()}
    try:
        top = int(low.get("$top", page_size))
        skip = int(low.get("$skip", 0))
    except ValueError:
        raise GraphError(400, "BadRequest", "Invalid $top or $skip.") from None
    if top < 1 or skip < 0:
        raise GraphError(400, "BadRequest", "Invalid $top or $skip.")
    select = [s.strip() for s in low.get("$select", "").split(",") if s.strip()]
    chunk = items[skip : skip + top]
    if select:
        keep = set(select) | {"id", "@odata.type"}
        chunk = [{k: v for k, v in it.items() if k in keep} for it in chunk]
    out: dict[str, Any] = {"@odata.context": f"{state.emulator.base_url}/v1.0/$metadata#{context}"}
    if low.get("$count", "").lower() == "true":
        out["@odata.count"] = len(items)
    out["value"] = chunk
    if skip + top < len(items):
        out["@odata.nextLink"] = f"{base}?$top={top}&$skip={skip + top}"
    return out


def handle(
    state: GraphState, tenant_id: str, segs: list[str], query: dict[str, str], base: str
) -> dict[str, Any]:
    tenant = state.directory.tenant(tenant_id)
    if tenant is None:
        raise item_not_found()
    rooms = sorted(tenant.rooms(), key=lambda u: u.mail)
    lists = sorted(tenant.room_lists.values(), key=lambda r: r.email_address)
    # `graph.` is the v1.0 schema's alias of `microsoft.graph` ($metadata: <Schema
    # Namespace="microsoft.graph" Alias="graph">); Kiota SDKs send `/places/graph.room` and
    # `/places/{list}/graph.roomList/rooms`, Graph accepts both spellings.
    kind = ["microsoft." + s.lower() if s.lower().startswith("graph.") else s.lower() for s in segs]
    if kind == ["microsoft.graph.room"]:
        return _page(
            state, [room_json(u) for u in rooms], query, base, "places/microsoft.graph.room"
        )
    if len(kind) == 1 and kind[0].removeprefix("microsoft.graph.") in _ODATA_NAMES:
        name = kind[0].removeprefix("microsoft.graph.")
        found = [p for p in tenant.places if p.type == name]
        return _page(
            state, [place_json(tenant, p) for p in found], query, base,
            f"places/microsoft.graph.{_ODATA_NAMES[name]}", PAGE_SIZES[kind[0]],
        )  # fmt: skip
    if kind == ["microsoft.graph.roomlist"]:
        return _page(
            state,
            [room_list_json(r) for r in lists],
            query,
            base,
            "places/microsoft.graph.roomList",
        )
    if len(segs) == 3 and kind[1] == "microsoft.graph.roomlist" and kind[2] == "rooms":
        rl = next((r for r in lists if r.email_address.lower() == segs[0].lower()), None)
        if rl is None:
            raise item_not_found()  # ids don't work here: only the list's email address does
        members = [u for u in rooms if u.id in rl.room_ids]
        return _page(
            state,
            [room_json(u) for u in members],
            query,
            base,
            f"places('{rl.email_address}')/microsoft.graph.roomList/rooms",
        )
    if len(segs) == 1:
        ident = segs[0].lower()
        context = {"@odata.context": f"{state.emulator.base_url}/v1.0/$metadata#places/$entity"}
        for u in rooms:
            if ident in (
                u.mail.lower(),
                u.id.lower(),
                str((u.room or {}).get("placeId", "")).lower(),
            ):
                return {**context, **room_json(u)}
        for rl in lists:
            if ident in (rl.email_address.lower(), rl.id.lower()):
                return {**context, **room_list_json(rl)}
        for place in tenant.places:
            mailbox = tenant.users.get(place.mailbox) if place.mailbox else None
            if ident == place.id.lower() or (mailbox is not None and ident == mailbox.mail.lower()):
                return {**context, **place_json(tenant, place)}
        raise item_not_found()
    raise GraphError(400, "BadRequest", "Resource not found for the segment.")
