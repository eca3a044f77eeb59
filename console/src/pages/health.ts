// Sync health per mapping: subscription expiry, last sync, lag, last error, poison messages.

import { seg } from "../api";
import type { PageContext } from "../app";
import { syncBadge } from "../badges";
import { h, replace } from "../dom";
import { reasonSentence } from "../reasons";
import { formatDateTime, formatDuration } from "../time";
import type { MappingHealth, SyncHealth } from "../types";
import { badgeEl, button, facts, messageSlot, pageHeading } from "../ui";

const MODE_WORDS: Record<MappingHealth["mode"], string> = {
  notifications: "Change notifications (Graph subscription)",
  polling: "Polling on a timer",
  pending: "Not synced yet",
};
const REFRESH_MS = 10_000;

export async function renderHealth(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}`;
  const load = () => ctx.api.get<SyncHealth>(`${base}/sync`, { signal: ctx.signal });
  const body = h("div");
  const msg = messageSlot();
  const names = new Map(ctx.resources.map((r) => [r.id, r.name]));
  const draw = (health: SyncHealth) => {
    replace(
      body,
      h(
        "p",
        { class: health.poisonMessages ? "alert alert-warning" : "hint", "data-poison": String(health.poisonMessages) },
        health.poisonMessages
          ? `${health.poisonMessages}${health.poisonMessagesCapped ? " or more" : ""} sync request${health.poisonMessages === 1 ? "" : "s"} of this building failed repeatedly and wait in the poison queue.`
          : "No sync request of this building is in the poison queue.",
      ),
      health.mappings.length
        ? h("ul", { class: "cards health" }, ...health.mappings.map((m) => card(ctx, base, m, names.get(m.resourceId) ?? m.resourceId)))
        : h("p", null, "No calendar is mapped yet, so there is nothing to sync."),
    );
  };
  draw(await load());
  const refresh = async () => {
    try {
      draw(await load());
      msg.set(null);
    } catch (err) {
      if (!ctx.signal.aborted) msg.set(ctx.handle(err, refresh));
    }
  };
  const timer = window.setInterval(() => {
    if (!document.hidden && !page.contains(document.activeElement)) void refresh();
  }, REFRESH_MS);
  ctx.onCleanup(() => window.clearInterval(timer));
  replace(
    page,
    pageHeading("Sync health", ctx.zone),
    h("div", { class: "actions" }, button("Refresh", refresh, { class: "secondary" }), msg.el),
    body,
  );
}

function card(ctx: PageContext, base: string, m: MappingHealth, name: string): HTMLElement {
  const badge = syncBadge({ status: m.status, reason: m.reason ?? null });
  const result = messageSlot();
  const sub = m.subscription;
  return h(
    "li",
    { class: "card", "data-health-resource": m.resourceId },
    h("h2", null, name, " ", badgeEl(badge)),
    badge.reason ? h("p", { class: "why" }, reasonSentence(m.reason) || badge.reason) : null,
    facts([
      ["Calendar", `${m.calendar.name ?? m.calendar.id} (${m.calendar.mailbox})`],
      ["Sync by", MODE_WORDS[m.mode] ?? m.mode],
      ["Subscription", sub ? `${sub.status}${sub.expiresAt ? `, expires ${formatDateTime(sub.expiresAt, ctx.zone)}` : ""}${sub.reason ? ` (${reasonSentence(sub.reason)})` : ""}` : "none"],
      ["Last sync", formatDateTime(m.lastSyncAt, ctx.zone)],
      ["Lag", formatDuration(m.lagSeconds)],
      ["Last error", m.lastError ? `${reasonSentence(m.lastError.reason)} (${formatDateTime(m.lastError.at, ctx.zone)})` : "none"],
      ["Delta state age", formatDuration(m.deltaState?.ageSeconds)],
      ["Next poll", m.nextPollAt ? formatDateTime(m.nextPollAt, ctx.zone) : "—"],
      ["Rounds / Graph requests", `${m.rounds} / ${m.graphRequests}`],
      ["Poison messages", String(m.poisonMessages ?? 0)],
    ]),
    h(
      "div",
      { class: "actions" },
      button(
        "Force full resync",
        async () => {
          try {
            await ctx.api.post(`${base}/resources/${seg(m.resourceId)}/sync`, {});
            result.set("Queued: a full resync runs now.", "success");
          } catch (err) {
            result.set(ctx.handle(err));
          }
        },
        { class: "secondary", "aria-label": `Force full resync of ${name}` },
      ),
      result.el,
    ),
  );
}
