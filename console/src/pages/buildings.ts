// The buildings the signed-in admin may manage: the access token's `buildings` claim. People get
// Building.Admin access only; Portal.Service-style access to every building is not offered here.

import { seg } from "../api";
import type { App } from "../app";
import { h, replace } from "../dom";
import { buildingHref } from "../router";
import type { BuildingList, Connection } from "../types";
import { pageHeading } from "../ui";

const CONNECTION_WORDS: Record<Connection["status"], string> = {
  connected: "Connected to Microsoft 365",
  reauth_required: "Reconnect needed",
  disconnected: "Not connected",
  error: "Connection error",
};

export async function renderBuildings(app: App, main: HTMLElement, signal: AbortSignal): Promise<void> {
  const buildings = app.auth.buildings();
  const roles = app.auth.roles();
  const heading = pageHeading("Buildings");
  if (!roles.includes("Building.Admin")) {
    replace(
      main,
      heading,
      h(
        "p",
        { class: "alert alert-warning", role: "status" },
        "Your account has no Building.Admin role in BookingBridge, so it manages no building. Ask the operator to assign you the role and the buildings you manage.",
      ),
    );
    return;
  }
  if (!buildings.length) {
    replace(
      main,
      heading,
      h(
        "p",
        { class: "alert alert-info", role: "status" },
        "Your account manages no building yet. Ask the operator to add your buildings to your account.",
      ),
    );
    return;
  }
  const items = buildings.map((b) => {
    const state = h("span", { class: "conn-state", "data-connection": "loading" }, "Checking the connection…");
    const name = h("p", { class: "building-name" });
    const li = h(
      "li",
      { class: "card building-card", "data-building": b },
      h("h2", null, h("a", { href: buildingHref(b, "m365") }, b)),
      name,
      state,
      h(
        "p",
        { class: "card-links" },
        h("a", { href: buildingHref(b, "resources"), "aria-label": `Resource sync of ${b}` }, "Resource sync"),
        " · ",
        h("a", { href: buildingHref(b, "bookings"), "aria-label": `Bookings of ${b}` }, "Bookings"),
        " · ",
        h("a", { href: buildingHref(b, "health"), "aria-label": `Sync health of ${b}` }, "Sync health"),
      ),
    );
    return { b, li, state, name };
  });
  replace(
    main,
    heading,
    h("p", null, `You manage ${buildings.length === 1 ? "one building" : `${buildings.length} buildings`}.`),
    h("ul", { class: "cards", "aria-label": "Your buildings" }, ...items.map((i) => i.li)),
  );
  const named = (async () => {
    // GET /buildings: the buildings of the claim that exist, with their names and zones.
    try {
      const listed = await app.api.get<BuildingList>("/buildings", { signal });
      const byId = new Map(listed.value.map((x) => [x.id, x]));
      for (const { b, name } of items) {
        const found = byId.get(b);
        name.textContent = found ? `${found.name} · ${found.timeZone}` : "Not set up in BookingBridge yet";
        name.dataset["exists"] = found ? "true" : "false";
      }
    } catch {
      // Names are a nicety here; each card still says its connection state.
    }
  })();
  await Promise.all([
    named,
    ...items.map(async ({ b, state }) => {
      try {
        const c = await app.api.get<Connection>(`/buildings/${seg(b)}/connection`, { signal });
        state.textContent = CONNECTION_WORDS[c.status] ?? c.status;
        state.dataset["connection"] = c.status;
      } catch (err) {
        if (signal.aborted) return;
        state.textContent = `Status unknown: ${app.handle(err) ?? ""}`;
        state.dataset["connection"] = "unknown";
      }
    }),
  ]);
}
