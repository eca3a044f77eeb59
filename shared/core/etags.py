"""Entity tags (ETag) of what the API serves, and If-Match preconditions on writes (RFC 9110 §8.8.3,
§13.1.1), for lost-update protection by portals: read, change, write back `If-Match: <ETag>`.

An ETag is strong and opaque: the SHA-256 of the stored entity's own (Table Storage) ETag, cut to
128 bits and quoted. It changes with every write of the entity and shows nothing of storage (the
service's ETag carries its timestamp). A precondition is checked against the version a write reads
and the write is conditional on that same version (shared/storage/tablestore.py), so a writer in
between turns into a re-read and then 412, never a lost update.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from shared.core.errors import FieldError, PreconditionFailed, ValidationFailed

HEADER = "If-Match"
# One entity-tag: optional W/ then a quoted run of etagc (%x21 / %x23-7E / obs-text).
_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_LIST = re.compile(rf"\s*{_TAG}\s*(?:,\s*{_TAG}\s*)*")
_ONE = re.compile(_TAG)
MAX_HEADER = 2048
# The whole header as the OpenAPI description declares it (`*` or the list, blanks around). ASCII
# only: the obs-text bytes RFC 9110 also allows cannot be sent by most clients (and a pattern
# with them is dropped by schemathesis' generator); the server still accepts them.
_ASCII_TAG = r'(?:W/)?"[\x21\x23-\x7e]*"'
PATTERN = rf"^ *(?:\*|{_ASCII_TAG} *(?:, *{_ASCII_TAG} *)*)$"


def entity_tag(stored_etag: str) -> str:
    """The API's ETag for a stored version (the Table Storage ETag of the entity)."""
    digest = hashlib.sha256(stored_etag.encode("utf-8")).digest()[:16]
    return '"' + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=") + '"'


@dataclass(frozen=True)
class IfMatch:
    """A parsed If-Match: `*` (any current version) or a set of strong tags."""

    any: bool
    tags: frozenset[str]

    def check(self, stored_etag: str | None) -> None:
        """412 unless the stored version (None: nothing stored) satisfies the condition.

        Strong comparison (§8.8.3.2): weak tags (`W/"..."`) never match, and we issue none.
        """
        if stored_etag is None:
            raise PreconditionFailed("Nothing is stored here, so no version can match If-Match")
        if not self.any and entity_tag(stored_etag) not in self.tags:
            raise PreconditionFailed()


def parse_if_match(value: str | None) -> IfMatch | None:
    """The request's If-Match header (None when absent: no precondition), or a 400 naming it."""
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return IfMatch(any=True, tags=frozenset())
    if len(text) > MAX_HEADER or not _LIST.fullmatch(text):
        raise ValidationFailed(
            [
                FieldError(
                    HEADER, 'must be * or a list of quoted entity tags, e.g. "Ab3…" (the ETag)'
                )
            ]
        )
    strong = frozenset(t for t in _ONE.findall(text) if not t.startswith("W/"))
    return IfMatch(any=False, tags=strong)
