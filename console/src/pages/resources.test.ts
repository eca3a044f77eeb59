import { describe, expect, it } from "vitest";
import { ApiClient } from "../api";
import type { App, PageContext } from "../app";
import type { Calendar, Resource } from "../types";
import { errorMessage } from "../ui";
import { renderResources } from "./resources";

const resources: Resource[] = [
  { id: "r1", name: "Room 1", kind: "room", paid: false, timeZone: "Europe/Amsterdam", capacity: 8, sync: { status: "not_synced", reason: "not_mapped", calendar: null, lastSyncAt: null, lagSeconds: null } },
  { id: "spa", name: "Spa", kind: "amenity", paid: true, timeZone: "Europe/Amsterdam", capacity: null, sync: { status: "not_supported", reason: "paid_resource", calendar: null, lastSyncAt: null, lagSeconds: null } },
];
const calendars: Calendar[] = [
  { id: "c1", name: "Room 1", owner: { name: "Room 1", address: "room1@c.com" }, kind: "room", canEdit: true, mailbox: "room1@c.com", mappedResourceId: "other" },
  { id: null, name: "Board", owner: { name: "Board", address: "board@c.com" }, kind: "room", canEdit: false, mailbox: "board@c.com", reason: "access_denied" },
];

function json(status: number, body: unknown, type = "application/json"): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": type } });
}

function context(): { ctx: PageContext; puts: string[] } {
  const puts: string[] = [];
  const fetchFn = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const path = url.replace(/\?.*$/, "");
    if (init?.method === "PUT") {
      puts.push(path);
      return Promise.resolve(
        json(409, { status: 409, title: "Conflict", detail: "That calendar is already mapped to another resource", reason: "calendar_mapped" }, "application/problem+json"),
      );
    }
    if (path.endsWith("/connection")) return Promise.resolve(json(200, { status: "connected", mode: "application", scopes: [] }));
    if (path.endsWith("/roomlists")) return Promise.resolve(json(422, { status: 422, reason: "places_not_granted" }, "application/problem+json"));
    if (path.endsWith("/calendars")) return Promise.resolve(json(200, { value: calendars, nextLink: null }));
    if (path.endsWith("/resources")) return Promise.resolve(json(200, { value: resources, nextLink: null }));
    return Promise.resolve(json(404, {}));
  };
  const api = new ApiClient({ base: "/api", token: () => Promise.resolve("t"), fetch: fetchFn });
  const app = {
    resources: () => api.all<Resource>("/buildings/hq/resources"),
    forgetResources: () => undefined,
    navigate: () => undefined,
  };
  const controller = new AbortController();
  const ctx: PageContext = {
    app: app as unknown as App,
    api,
    config: { clientId: "c", authority: "a", scopes: [], redirectUri: "r", apiBase: "/api", knownAuthorities: [] },
    building: "hq",
    query: {},
    zone: "Europe/Amsterdam",
    resources,
    signal: controller.signal,
    announce: () => undefined,
    onCleanup: () => undefined,
    handle: (err) => errorMessage(err),
  };
  return { ctx, puts };
}

describe("Resource sync page", () => {
  it("gives rows their hooks, no dropdown to a paid resource, and disables unreachable rooms", async () => {
    const { ctx } = context();
    const page = document.createElement("div");
    await renderResources(ctx, page);
    const row = page.querySelector('tr[data-resource-id="r1"]');
    expect(row?.querySelector("[data-state]")?.getAttribute("data-state")).toBe("not_synced");
    const paid = page.querySelector('tr[data-resource-id="spa"]');
    expect(paid?.querySelector("[data-state]")?.textContent).toBe("Not supported");
    expect(paid?.querySelector("select")).toBeNull();
    const select = row?.querySelector("select");
    expect(select?.getAttribute("aria-label")).toBe("Outlook calendar for Room 1");
    const board = select?.querySelector('option[value="board@c.com|"]') as HTMLOptionElement | null;
    expect(board?.disabled).toBe(true);
    expect(board?.textContent).toContain("unavailable");
  });

  it("shows a 409 on its row after Save", async () => {
    const { ctx, puts } = context();
    const page = document.createElement("div");
    document.body.append(page);
    await renderResources(ctx, page);
    const select = page.querySelector('tr[data-resource-id="r1"] select') as HTMLSelectElement;
    select.value = "room1@c.com|c1";
    select.dispatchEvent(new Event("change"));
    const save = [...page.querySelectorAll("button")].find((b) => b.textContent === "Save") as HTMLButtonElement;
    save.click();
    await new Promise((r) => setTimeout(r, 50));
    expect(puts).toEqual(["/api/buildings/hq/resources/r1/mapping"]);
    const msg = page.querySelector('tr[data-resource-id="r1"] .msg');
    expect(msg?.textContent).toContain("already mapped to another resource");
    expect(msg?.className).toContain("msg-error");
    page.remove();
  });
});
