"""JSON batching (`POST /v1.0/$batch`): ≤ 20 requests, unique ids, relative URLs, `dependsOn`.

Each inner request goes through the normal dispatcher (so it is authenticated, counted, throttled
per mailbox and may get its own 429 with `Retry-After`). Unordered requests run at most 4 at a time
(Graph feeds Outlook that way); a chain with `dependsOn` runs in order and a failed dependency
answers 424. Responses come back in no particular order — clients must match them by id.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import GraphError
from .messages import Reply, Req, parse_query

# The router's dispatch, passed in: each inner request is handled exactly like an outer one.
Dispatch = Callable[[Req], Awaitable[Reply]]

MAX_REQUESTS = 20
# Inner responses' headers as Graph sends them (concepts/json-batching.md, "Example JSON batch
# response"): a success with a body carries OData-Version and the full JSON media type, an error
# a plain application/json; every response Cache-Control: no-cache.
SUCCESS_HEADERS = {
    "Cache-Control": "no-cache",
    "OData-Version": "4.0",
    "Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8",
}
ERROR_HEADERS = {"Cache-Control": "no-cache", "Content-Type": "application/json"}


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


async def run_batch(dispatch: Dispatch, req: Req) -> Reply:
    if req.method.upper() != "POST":
        raise GraphError(405, "Request_BadRequest", "Method not allowed.")
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise _bad("Invalid batch payload format.")
    items: list[dict[str, Any]] = body["requests"]
    if len(items) > MAX_REQUESTS:
        raise _bad(f"The number of batch requests exceeds the limit of {MAX_REQUESTS}.")
    ids: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not all(k in item for k in ("id", "method", "url")):
            raise _bad("Each batch request needs an id, a method and a url.")
        rid = str(item["id"])
        if rid in ids:
            raise _bad("Batch request ids must be unique.")
        ids.append(rid)
        headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        if item.get("body") is not None and "content-type" not in headers:
            raise _bad("A Content-Type header is required when a batch request has a body.")
    for item in items:
        for dep in item.get("dependsOn") or []:
            if str(dep) not in ids:
                raise _bad(f"dependsOn refers to an unknown request id '{dep}'.")

    outer_auth = req.headers.get("authorization")

    async def one(item: dict[str, Any]) -> dict[str, Any]:
        url = str(item["url"])
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme:
            # Graph resolves `url` against its version root, so an absolute URL (what Kiota's
            # BatchRequestItem puts there) fails as that one request, with 400 "Resource not
            # found for the segment" (msgraph-sdk-python#1015); the batch itself answers 200.
            return {
                "id": str(item["id"]),
                "status": 400,
                "headers": dict(ERROR_HEADERS),
                "body": {
                    "error": {
                        "code": "BadRequest",
                        "message": f"Resource not found for the segment '{scheme}:'.",
                    }
                },
            }
        if not url.startswith("/"):
            url = "/" + url
        path, _, raw_query = url.partition("?")
        headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        if outer_auth:
            headers.setdefault("authorization", outer_auth)
        payload = item.get("body")
        raw = (
            b""
            if payload is None
            else (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        )
        reply = await dispatch(
            Req(str(item["method"]).upper(), path, parse_query(raw_query), headers, raw)
        )
        out_headers: dict[str, str] = {"Cache-Control": "no-cache"}
        if reply.body is not None:
            if 200 <= reply.status < 300:
                out_headers.update(SUCCESS_HEADERS)
            else:
                out_headers.update(ERROR_HEADERS)
        for k, v in reply.headers.items():
            if k.lower() in ("retry-after", "location", "preference-applied", "etag"):
                out_headers[k] = v
        result: dict[str, Any] = {
            "id": str(item["id"]),
            "status": reply.status,
            "headers": out_headers,
        }
        if reply.body is not None:
            result["body"] = reply.body
        return result

    results: dict[str, dict[str, Any]] = {}
    if any(item.get("dependsOn") for item in items):
        # Sequential in list order; dependants of a failed request get 424.
        for item in items:
            deps = [str(d) for d in item.get("dependsOn") or []]
            failed = (
                [d for d in deps if not 200 <= int(results[d]["status"]) < 300]
                if all(d in results for d in deps)
                else deps
            )
            if failed:
                results[str(item["id"])] = {
                    "id": str(item["id"]),
                    "status": 424,
                    "headers": dict(ERROR_HEADERS),
                    "body": {
                        "error": {
                            "code": "FailedDependency",
                            "message": "The dependent request failed.",
                        }
                    },
                }
                continue
            results[str(item["id"])] = await one(item)
    else:
        gate = asyncio.Semaphore(4)

        async def gated(item: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                return await one(item)

        for res in await asyncio.gather(*(gated(i) for i in items)):
            results[res["id"]] = res
    responses = list(results.values())
    random.shuffle(responses)  # Graph promises no order
    return Reply(200, {"responses": responses})
