"""What every queue trigger does first: decode its message, or drop one that is not a message of
that queue. Retrying cannot make an unreadable message readable, so it is logged and dropped
rather than retried into the poison queue (which holds only messages worth a second look)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import azure.functions as func

T = TypeVar("T")
logger = logging.getLogger(__name__)


def decode_or_drop(
    msg: func.QueueMessage, decode: Callable[[str], T], queue: str, kind: str
) -> T | None:
    """`decode(body)`, or None (logged as "`queue`: message … is not `kind`; dropped") when it
    raises `ValidationFailed`."""
    # shared/ is imported when a message arrives, not when the app is indexed (STYLE.md rule 1).
    from shared.core.errors import ValidationFailed

    try:
        return decode(msg.get_body().decode("utf-8", "replace"))
    except ValidationFailed:
        logger.warning("%s: message %s is not %s; dropped", queue, msg.id, kind)
        return None
