"""The Graph part's state: mailboxes built from the directory, settings, and links to the parts.

Mailboxes are created when a tenant is seeded (directory `on_seed`) and lazily on first use, with the
default "Calendar", the scenario's secondary calendars and its calendar shares (a share gives the
sharee a copy of the calendar in their own mailbox, as Outlook shows it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import GraphConfig
from .delivery import Notifier
from .deltatokens import DeltaStore
from .faults import Faults
from .model import Calendar, EventRec, Mailbox
from .stats import Stats
from .throttling import Throttle

log = logging.getLogger(__name__)

SHARE_ROLES = (
    "freeBusyRead",
    "limitedRead",
    "read",
    "write",
    "delegateWithoutPrivateEventAccess",
    "delegateWithPrivateEventAccess",
)
WRITE_ROLES = ("write", "delegateWithoutPrivateEventAccess", "delegateWithPrivateEventAccess")


@dataclass
class Share:
    owner_id: str
    calendar_id: str
    grantee_id: str
    role: str
    copy_id: str


@dataclass
class TenantGraph:
    """Per tenant: calendar shares (owner side) and which seeded specs were applied."""

    shares: list[Share] = field(default_factory=list)
    applied: set[Any] = field(default_factory=set)


class GraphState:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.clock = emulator.clock
        self.directory = emulator.directory
        self.config = GraphConfig()
        self.mailboxes: dict[tuple[str, str], Mailbox] = {}
        self.tenants: dict[str, TenantGraph] = {}
        self.lock = threading.RLock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stats: Stats = Stats()
        self.faults: Faults = Faults()
        self.throttle: Throttle = Throttle()
        self.delta: DeltaStore = DeltaStore()
        # Hooks run after every mailbox change (room attendant, notifications); set by modules.
        self.change_hooks: list[Callable[[Mailbox, EventRec, str], None]] = []
        self.notifier: Notifier = Notifier(self)
        self.directory.on_seed(self._on_seed)
        self.directory.on_revoke(self._on_revoke)

    # -------------------------------------------------------------- mailboxes
    def now(self) -> dt.datetime:
        now: dt.datetime = self.clock.now()
        return now

    def _on_seed(self, tenant: Any) -> None:
        with self.lock:
            self.sync_tenant(tenant.id)

    def _on_revoke(self, tenant_id: str, user_id: str, client_id: str | None) -> None:
        self.notifier.on_grant_revoked(tenant_id, user_id, client_id)

    def tenant_graph(self, tenant_id: str) -> TenantGraph:
        return self.tenants.setdefault(tenant_id, TenantGraph())

    def sync_tenant(self, tenant_id: str) -> None:
        """Apply the directory's calendars and shares for the tenant (idempotent)."""
        tenant = self.directory.tenant(tenant_id)
        if tenant is None:
            return
        tg = self.tenant_graph(tenant.id)
        for user in list(tenant.users.values()):
            self._ensure(tenant.id, user)
        for spec in list(tenant.calendars):
            if spec in tg.applied:
                continue
            tg.applied.add(spec)
            owner = self.mailboxes.get((tenant.id, spec.owner_id))
            if owner is not None:
                created = owner.add_calendar(spec.name)
                if spec.color:
                    created.color = spec.color
        for share in list(tenant.calendar_shares):
            if share in tg.applied:
                continue
            tg.applied.add(share)
            owner = self.mailboxes.get((tenant.id, share.owner_id))
            grantee = self.mailboxes.get((tenant.id, share.grantee_id))
            if owner is None or grantee is None:
                continue
            cal = (
                owner.default_calendar
                if share.calendar_name is None
                else next(
                    (
                        c
                        for c in owner.calendars.values()
                        if c.name == share.calendar_name and c.shared_owner is None
                    ),
                    None,
                )
            )
            if cal is not None:
                self.share_calendar(owner, cal, grantee, share.role)

    def _ensure(self, tenant_id: str, user: Any) -> Mailbox:
        key = (tenant_id, user.id)
        mb = self.mailboxes.get(key)
        if mb is None:
            mb = Mailbox(
                tenant_id=tenant_id,
                user_id=user.id,
                upn=user.user_principal_name,
                mail=user.mail,
                display_name=user.display_name,
                is_room=bool(user.is_room),
                room_policy=dict(getattr(user, "room", {}) or {}),
                default_permission=str(getattr(user, "calendar_permission", "AvailabilityOnly")),
            )
            mb.add_calendar("Calendar", is_default=True)
            self.mailboxes[key] = mb
        return mb

    def mailbox(self, tenant_id: str, id_or_upn: str) -> Mailbox | None:
        """The mailbox of a directory user in the tenant (None if there is no such user)."""
        user = self.directory.user(tenant_id, id_or_upn)
        if user is None:
            return None
        with self.lock:
            if (tenant_id, user.id) not in self.mailboxes:
                self.sync_tenant(tenant_id)
            return self._ensure(tenant_id, user)

    def mailbox_by_address(self, tenant_id: str, address: str) -> Mailbox | None:
        return self.mailbox(tenant_id, address) if address else None

    def share_calendar(self, owner: Mailbox, cal: Calendar, grantee: Mailbox, role: str) -> Share:
        if role not in SHARE_ROLES:
            raise ValueError(f"unknown calendar role {role!r}")
        tg = self.tenant_graph(owner.tenant_id)
        for share in tg.shares:
            if (share.owner_id, share.calendar_id, share.grantee_id) == (
                owner.user_id,
                cal.id,
                grantee.user_id,
            ):
                share.role = role
                grantee.calendars[share.copy_id].role = role
                return share
        # Outlook adds the sharee's copy named after the owner, with its own id.
        copy = grantee.add_calendar(owner.display_name)
        copy.shared_owner = owner.user_id
        copy.shared_calendar_id = cal.id
        copy.role = role
        share = Share(owner.user_id, cal.id, grantee.user_id, role, copy.id)
        tg.shares.append(share)
        return share

    def share_role(self, owner: Mailbox, calendar_id: str, grantee_id: str) -> str | None:
        for share in self.tenant_graph(owner.tenant_id).shares:
            if (share.owner_id, share.calendar_id, share.grantee_id) == (
                owner.user_id,
                calendar_id,
                grantee_id,
            ):
                return share.role
        return None

    # --------------------------------------------------------------- changes
    def changed(self, mb: Mailbox, rec: EventRec, change_type: str) -> None:
        for hook in list(self.change_hooks):
            try:
                hook(mb, rec, change_type)
            except Exception:  # a hook failure must not fail the client's write
                log.exception("graph change hook failed")

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Run `fn` on the server loop after `delay` seconds (room attendant, deliveries)."""
        loop = self.loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                fn()
                return
        loop.call_soon_threadsafe(loop.call_later, delay, fn)
