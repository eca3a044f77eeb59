"""The renewal timer: renew subscriptions before Graph lets them expire.

`renew_due`: every subscription expiring within the margin is PATCHed in `$batch` requests of 20
per connection; 404 → recreated and resynced; failures marked with a reason code for sync health;
connections waiting for re-authorisation are skipped. Missing, failed or abandoned ones are
recreated, ones whose mailbox is no longer mapped released (shared/subscriptions/manage.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from shared.core.errors import GraphError, IdentityError
from shared.core.times import rfc3339_or_none, utc_z
from shared.graph.client import BATCH_LIMIT, BatchItem, BatchResult
from shared.storage.tablestore import Entity
from shared.subscriptions import store
from shared.subscriptions.manage import (
    CLAIM_TTL,
    SubscriptionDeps,
    expiry_for,
    failure_reason,
    recreate,
)
from shared.subscriptions.store import aware, info_from

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenewReport:
    scanned: int = 0
    renewed: int = 0
    recreated: int = 0
    released: int = 0
    failed: int = 0
    skipped: int = 0  # connection missing or waiting for re-authorisation
    batches: int = 0  # `$batch` requests sent

    def to_log(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


def due_for_renewal(
    index: Mapping[str, Any], now: datetime, margin: timedelta
) -> Literal["renew", "recreate", "ok"]:
    """What the renewal timer does with one index entity (pure; connection checks aside)."""
    status = index.get("status")
    if status == "creating":
        claimed = aware(index.get("claimedAt"))
        return "recreate" if claimed is None or claimed < now - CLAIM_TTL else "ok"
    if status != "active" or not index.get("subscriptionId"):
        return "recreate"
    expires = aware(index.get("expiresAt"))
    if expires is None or expires <= now:
        return "recreate"
    return "renew" if expires <= now + margin else "ok"


def renew_due(deps: SubscriptionDeps) -> RenewReport:
    """Renew subscriptions expiring within the margin (`$batch` PATCHes, 20 per request, per
    connection), recreate missing or failed ones, release ones whose mailbox is no longer mapped.

    Reads the index entities of every building that need work (`store.index_needing_work`), so a
    healthy estate costs one query per run.
    """
    now = deps.now()
    margin = timedelta(minutes=deps.settings.renew_margin_minutes)
    current_check = deps.keys.current().check
    entities = store.index_needing_work(deps.tables, now + margin, current_check)
    by_building: dict[str, list[Entity]] = {}
    for entity in entities:
        by_building.setdefault(info_from(entity).building_id, []).append(entity)
    report = RenewReport(scanned=len(entities))
    for building_id, group in by_building.items():
        report = _renew_building(deps, building_id, group, now, margin, current_check, report)
    return report


def _renew_building(
    deps: SubscriptionDeps,
    building_id: str,
    group: list[Entity],
    now: datetime,
    margin: timedelta,
    current_check: str,
    report: RenewReport,
) -> RenewReport:
    connection = deps.connections.get(building_id)
    if connection is None or connection.status != "connected":
        return replace(report, skipped=report.skipped + len(group))
    renew: list[Entity] = []
    to_recreate: list[Entity] = []
    for entity in group:
        action = due_for_renewal(entity, now, margin)
        if action == "renew" and (
            entity.get("connectionId") != connection.connection_id
            or entity.get("keyCheck") != current_check
            or deps.delivers_elsewhere(entity)  # delivery switched (webhook <-> Event Hubs)
        ):
            action = "recreate"
        if action == "renew":
            renew.append(entity)
        elif action == "recreate":
            to_recreate.append(entity)
    expiry = utc_z(expiry_for(now, deps.settings.subscription_minutes))
    items = [
        BatchItem(
            id=str(n),
            method="PATCH",
            url=f"/subscriptions/{quote(str(e['subscriptionId']), safe='')}",
            body={"expirationDateTime": expiry},
        )
        for n, e in enumerate(renew)
    ]
    renewed = failed = 0
    results: dict[str, BatchResult] = {}
    sent = 0
    if items:
        try:
            results = deps.graph.batch(connection, items)
            sent = -(-len(items) // BATCH_LIMIT)
            # Inner requests are authorised one by one: a token that expired between the batch's
            # own check and an item (or a clock disagreement) fails items with 401. One fresh
            # token and one more try for those, as the Graph layer does for single requests.
            expired = [i for i in items if _token_expired(results.get(i.id))]
            if expired:
                deps.graph.tokens.invalidate(connection)
                results.update(deps.graph.batch(connection, expired))
                sent += -(-len(expired) // BATCH_LIMIT)
        except (GraphError, IdentityError) as err:
            reason = failure_reason(err)
            logger.warning("renewing subscriptions of building %s failed: %s", building_id, reason)
            for entity in renew:
                store.mark(deps.tables, entity, "active", reason, deps.now())  # active till expiry
            return replace(
                report,
                failed=report.failed + len(renew),
                batches=report.batches + -(-len(items) // BATCH_LIMIT),
            )
    done: list[tuple[Entity, datetime]] = []
    for n, entity in enumerate(renew):
        result = results.get(str(n))
        if result is not None and result.ok:
            body = result.body if isinstance(result.body, dict) else {}
            expires = rfc3339_or_none(body.get("expirationDateTime")) or deps.expiry()
            done.append((entity, expires))
            renewed += 1
        elif result is not None and result.status == 404:
            to_recreate.append(entity)  # gone (expired early, deleted by an admin): recreate
        else:
            reason = "missing_response" if result is None else _batch_reason(result)
            store.mark(deps.tables, entity, "active", reason, deps.now())
            failed += 1
    store.mark_renewed_all(deps.tables, done, deps.now())
    recreated = released = 0
    for entity in to_recreate:
        info = info_from(entity)
        outcome = recreate(deps, building_id, info.mailbox, entity)
        if outcome == "recreated":
            recreated += 1
        elif outcome == "released":
            released += 1
        else:
            failed += 1
    return replace(
        report,
        renewed=report.renewed + renewed,
        recreated=report.recreated + recreated,
        released=report.released + released,
        failed=report.failed + failed,
        batches=report.batches + sent,
    )


def _token_expired(result: BatchResult | None) -> bool:
    return (
        result is not None
        and result.status == 401
        and result.failure().code == "InvalidAuthenticationToken"
    )


def _batch_reason(result: BatchResult) -> str:
    failure = result.failure()
    return "throttled" if failure.status == 429 else failure.code
