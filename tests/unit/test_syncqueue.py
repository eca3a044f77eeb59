from __future__ import annotations

import pytest

from shared.core.errors import ValidationFailed
from shared.sync.queue import SyncRequest


def test_round_trip_and_mailbox_lower_cased() -> None:
    request = SyncRequest("b1", "Room@Contoso.example", "mapped", resource="r1", full=True)
    decoded = SyncRequest.decode(request.encode())
    assert decoded == SyncRequest("b1", "room@contoso.example", "mapped", "r1", True)


@pytest.mark.parametrize("text", ["", "{}", '{"building":"b","mailbox":"m","reason":"x"}', "[1]"])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(ValidationFailed):
        SyncRequest.decode(text)
