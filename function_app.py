"""BookingBridge Azure Functions app: assembles the blueprints, nothing else.

No settings, clients or network at import time: an import failure here would make every function
silently disappear after deploy (STYLE.md rule 1).
"""

import azure.functions as func

from functions import admin, bookings, connect, graph_webhook, mapping, ops, sync

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (
    ops.bp,
    admin.bp,
    connect.bp,
    graph_webhook.bp,
    mapping.bp,
    sync.bp,
    bookings.bp,
):
    app.register_functions(blueprint)
