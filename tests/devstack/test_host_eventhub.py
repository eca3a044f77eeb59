"""The local host and Event Hubs triggers (issue 17): indexed as the worker indexes them, listed,
never listened to (no Event Hubs runs here), and invocable through the admin API with one event
(tests/e2e/test_eventhub.py does that on the stack). Other unknown triggers are still refused."""

from __future__ import annotations

import azure.functions as func
import pytest

from devstack.host.config import HostConfigError
from devstack.host.functions import EventHubTriggerSpec, index_functions


def test_an_event_hub_trigger_is_indexed_with_its_hub_group_and_cardinality() -> None:
    app = func.FunctionApp()

    @app.event_hub_message_trigger(
        arg_name="events", event_hub_name="%HUB%", connection="HUBS",
        consumer_group="ours", cardinality="many",
    )  # fmt: skip
    def many(events: list[func.EventHubEvent]) -> None: ...

    @app.event_hub_message_trigger(arg_name="event", event_hub_name="plain", connection="HUBS")
    def one(event: func.EventHubEvent) -> None: ...

    specs = {s.name: s for s in index_functions(app, {"HUB": "graph-notifications"})}
    assert specs["many"].trigger == EventHubTriggerSpec("graph-notifications", "HUBS", "ours", True)
    assert specs["one"].trigger == EventHubTriggerSpec("plain", "HUBS", "$Default", False)
    assert specs["many"].trigger_type == "eventHub"


def test_an_unresolved_hub_name_and_other_triggers_are_still_refused() -> None:
    app = func.FunctionApp()

    @app.event_hub_message_trigger(arg_name="events", event_hub_name="%HUB%", connection="HUBS")
    def hub(events: func.EventHubEvent) -> None: ...

    @app.blob_trigger(arg_name="blob", path="c/{name}", connection="AzureWebJobsStorage")
    def blob(blob: func.InputStream) -> None: ...

    with pytest.raises(HostConfigError) as info:
        index_functions(app, {})
    assert "HUB" in str(info.value) and "blobTrigger is not supported" in str(info.value)
