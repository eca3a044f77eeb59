"""BookingBridge Azure Functions app: assembles the blueprints, nothing else.

No settings, clients or network at import time: an import failure here would make every function
silently disappear after deploy (STYLE.md rule 1).
"""

import azure.functions as func

from functions import (
    admin,
    analytics,
    bookings,
    buildings,
    checks,
    connect,
    console,
    graph_eventhub,
    graph_webhook,
    mapping,
    ops,
    sync,
    webhooks,
)

# No app-wide auth level: every route states ANONYMOUS itself (the API checks bearer tokens in
# shared/api/auth.py, and Graph's webhook cannot send a function key). Left at the library's
# FUNCTION default, a route that forgot its level shows up as such in the indexing test, which
# checks every HTTP trigger (tests/unit/test_function_app.py); an ANONYMOUS default would hide it.
app = func.FunctionApp()

for blueprint in (
    ops.bp,
    buildings.bp,
    admin.bp,
    connect.bp,
    graph_webhook.bp,
    graph_eventhub.bp,
    mapping.bp,
    sync.bp,
    bookings.bp,
    console.bp,
    checks.bp,
    webhooks.bp,
    analytics.bp,
):
    app.register_functions(blueprint)
