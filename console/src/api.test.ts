import { describe, expect, it, vi } from "vitest";
import { ApiClient, ApiError, NetworkError, SignInRequired } from "./api";

function json(status: number, body: unknown, type = "application/json"): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "Content-Type": type } });
}

function client(responses: (Response | Error)[], tokens = ["t1", "t2", "t3"]) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetchFn = vi.fn((url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: typeof url === "string" ? url : url instanceof URL ? url.href : url.url, init: init ?? {} });
    const next = responses.shift();
    if (!next) throw new Error("no more responses");
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  });
  const token = vi.fn(({ forceRefresh }: { forceRefresh: boolean }) =>
    Promise.resolve(forceRefresh ? `fresh-${tokens.shift()}` : (tokens.shift() ?? "t")),
  );
  const api = new ApiClient({ base: "/api", token, fetch: fetchFn, sleep: () => Promise.resolve() });
  return { api, calls, token };
}

describe("ApiClient", () => {
  it("hands a download over byte for byte, and an error of one as a problem", async () => {
    const csv = new Uint8Array([0xef, 0xbb, 0xbf, 0x61, 0x0d, 0x0a]); // BOM, "a", CRLF
    const { api } = client([
      new Response(csv, { status: 200, headers: { "Content-Type": "text/csv" } }),
      json(400, { title: "Invalid request", status: 400, errors: [{ field: "to", message: "bad" }] }, "application/problem+json"),
    ]);
    const blob = await api.request<Blob>("GET", "/x", { blob: true });
    expect([...new Uint8Array(await blob.arrayBuffer())]).toEqual([...csv]);
    await expect(api.request("GET", "/x", { blob: true })).rejects.toBeInstanceOf(ApiError);
  });

  it("sends a bearer token fetched for every call, and JSON", async () => {
    const { api, calls, token } = client([json(200, { a: 1 }), json(201, { b: 2 })]);
    expect(await api.get("/buildings/hq/resources")).toEqual({ a: 1 });
    expect(await api.put("/buildings/hq/resources/r1", { name: "R" })).toEqual({ b: 2 });
    expect(token).toHaveBeenCalledTimes(2);
    expect(calls[0]?.url).toBe("/api/buildings/hq/resources");
    expect((calls[0]?.init.headers as Record<string, string>)["Authorization"]).toBe("Bearer t1");
    expect((calls[1]?.init.headers as Record<string, string>)["Authorization"]).toBe("Bearer t2");
    expect(calls[1]?.init.body).toBe('{"name":"R"}');
  });

  it("follows a list's nextLink by its token, on its own base and with the caller's query", async () => {
    const { api, calls } = client([
      json(200, { value: [1, 2], nextLink: "https://elsewhere.example/api/x?top=2&continuationToken=p%2B2" }),
      json(200, { value: [3], nextLink: null }),
    ]);
    expect(await api.all<number>("/x", { query: { top: 2 } })).toEqual([1, 2, 3]);
    expect(calls.map((c) => c.url)).toEqual(["/api/x?top=2", "/api/x?top=2&continuationToken=p%2B2"]);
    expect(api.next("/x", { value: [], nextLink: null })).toBeNull();
  });

  it("builds the query, leaving out empty values", async () => {
    const { api, calls } = client([json(200, [])]);
    await api.get("/x", { query: { from: "2026-12-01T00:00:00Z", limit: 5, to: "", y: undefined } });
    expect(calls[0]?.url).toBe("/api/x?from=2026-12-01T00%3A00%3A00Z&limit=5");
  });

  it("answers undefined for 204", async () => {
    const { api } = client([json(204, null)]);
    await expect(api.delete("/x")).resolves.toBeUndefined();
  });

  it("turns problem+json into ApiError", async () => {
    const { api } = client([
      json(409, { status: 409, title: "Conflict", detail: "mapped", reason: "calendar_mapped" }, "application/problem+json"),
    ]);
    const err = await api.put("/m", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(409);
    expect((err as ApiError).problem.reason).toBe("calendar_mapped");
  });

  it("retries a 401 once with a refreshed token, then asks to sign in", async () => {
    const ok = client([json(401, {}), json(200, { ok: true })]);
    expect(await ok.api.get("/x")).toEqual({ ok: true });
    expect((ok.calls[1]?.init.headers as Record<string, string>)["Authorization"]).toMatch(/^Bearer fresh-/);

    const bad = client([json(401, {}), json(401, {})]);
    await expect(bad.api.get("/x")).rejects.toBeInstanceOf(SignInRequired);
  });

  it("retries a safe call once after a network failure", async () => {
    const { api, calls } = client([new TypeError("Failed to fetch"), json(200, { ok: 1 })]);
    expect(await api.get("/x")).toEqual({ ok: 1 });
    expect(calls).toHaveLength(2);
  });

  it("does not retry a POST after a network failure: NetworkError", async () => {
    const { api, calls } = client([new TypeError("Failed to fetch")]);
    await expect(api.post("/x", {})).rejects.toBeInstanceOf(NetworkError);
    expect(calls).toHaveLength(1);
  });

  it("reports a gateway error without problem+json as a NetworkError after its retry", async () => {
    const { api, calls } = client([
      new Response("bad gateway", { status: 502 }),
      new Response("bad gateway", { status: 502 }),
    ]);
    await expect(api.get("/x")).rejects.toBeInstanceOf(NetworkError);
    expect(calls).toHaveLength(2);
  });

  it("passes a sign-in requirement from the token provider through", async () => {
    const api = new ApiClient({
      base: "/api",
      token: () => Promise.reject(new SignInRequired()),
      fetch: vi.fn(),
    });
    await expect(api.get("/x")).rejects.toBeInstanceOf(SignInRequired);
  });

  it("sends a raw CSV body with its content type", async () => {
    const { api, calls } = client([json(200, { imported: 1, rejected: [] })]);
    await api.request("POST", "/buildings/hq/users:import", { raw: { body: "email,name,companyId\n", contentType: "text/csv" } });
    expect((calls[0]?.init.headers as Record<string, string>)["Content-Type"]).toBe("text/csv");
    expect(calls[0]?.init.body).toBe("email,name,companyId\n");
  });
});
