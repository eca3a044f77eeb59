// Bookings of a day as a timeline per resource: platform vs Outlook, with attribution.

import { seg } from "../api";
import type { PageContext } from "../app";
import { h, replace } from "../dom";
import { buildingHref } from "../router";
import { addDays, dayRange, formatTime, isoZ, todayIn } from "../time";
import { attributionText, hourMarks, layoutBlocks, sourceText, type CompanyNames } from "../timeline";
import type { BookingItem, Company, Resource } from "../types";
import { button, messageSlot, pageHeading, stackable } from "../ui";

// Polled, not pushed: the API has no push channel, and server-sent events would hold a Functions
// invocation open per watching admin (costly on consumption plans, cut at the host's timeout).
// Every 1.5 s (one small GET, skipped while one is in flight or the tab is hidden) keeps an
// Outlook booking on screen within 5 s of its being made, sync latency included.
const POLL_MS = 1500;

export async function renderBookings(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}`;
  const date = /^\d{4}-\d{2}-\d{2}$/.test(ctx.query["date"] ?? "") ? (ctx.query["date"] as string) : todayIn(ctx.zone);
  const { from, to } = dayRange(date, ctx.zone);
  const load = () =>
    ctx.api.all<BookingItem>(`${base}/bookings`, {
      query: { from: isoZ(from), to: isoZ(to), source: "all" },
      signal: ctx.signal,
    });
  const [first, companies] = await Promise.all([load(), companyNames(ctx, base)]);
  const timeline = h("div", { class: "timeline" });
  const table = h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "All bookings of the day" });
  const updated = h("p", { class: "hint", "data-updated": "" });
  const msg = messageSlot();
  let lastIds = "";
  const draw = (bookings: BookingItem[]) => {
    replace(timeline, ...drawTimeline(ctx, ctx.resources, bookings, from, to, date, companies));
    replace(table, drawTable(ctx, ctx.resources, bookings, companies));
    updated.textContent = `Updated ${formatTime(new Date().toISOString(), ctx.zone)}; refreshes by itself every few seconds.`;
    const ids = bookings.map((b) => b.id).sort().join(",");
    if (lastIds && ids !== lastIds) ctx.announce(`Bookings changed: ${bookings.length} on this day.`);
    lastIds = ids;
  };
  draw(first);

  let busy = false;
  const poll = async () => {
    if (busy || document.hidden || ctx.signal.aborted) return;
    busy = true;
    try {
      draw(await load());
      msg.set(null);
    } catch (err) {
      if (!ctx.signal.aborted) msg.set(ctx.handle(err, poll));
    } finally {
      busy = false;
    }
  };
  const timer = window.setInterval(() => void poll(), POLL_MS);
  const onVisible = () => void poll();
  document.addEventListener("visibilitychange", onVisible);
  ctx.onCleanup(() => {
    window.clearInterval(timer);
    document.removeEventListener("visibilitychange", onVisible);
  });

  const dayInput = h("input", { type: "date", id: "booking-day", value: date });
  dayInput.addEventListener("change", () => {
    if (dayInput.value) ctx.app.navigate(buildingHref(ctx.building, "bookings", { date: dayInput.value }));
  });
  const go = (d: string) => () => ctx.app.navigate(buildingHref(ctx.building, "bookings", { date: d }));
  replace(
    page,
    pageHeading("Bookings", ctx.zone),
    h(
      "div",
      { class: "toolbar", role: "group", "aria-label": "Day" },
      button("Previous day", go(addDays(date, -1)), { class: "secondary" }),
      h("label", { for: "booking-day" }, "Day"),
      dayInput,
      button("Next day", go(addDays(date, 1)), { class: "secondary" }),
      button("Today", go(todayIn(ctx.zone)), { class: "secondary" }),
    ),
    h(
      "p",
      { class: "legend" },
      h("span", { class: "swatch swatch-platform" }, "Platform"),
      " booked through BookingBridge; ",
      h("span", { class: "swatch swatch-outlook" }, "Outlook"),
      " booked directly in Outlook and synced back.",
    ),
    updated,
    msg.el,
    timeline,
    h("h2", null, "All bookings of the day"),
    table,
  );
}

/** The building's company names; without them attribution falls back to ids (never an error). */
async function companyNames(ctx: PageContext, base: string): Promise<CompanyNames> {
  try {
    const companies = await ctx.api.all<Company>(`${base}/companies`, { signal: ctx.signal });
    return new Map(companies.map((c) => [c.id, c.name]));
  } catch {
    return new Map();
  }
}

function drawTimeline(
  ctx: PageContext,
  resources: Resource[],
  bookings: BookingItem[],
  from: Date,
  to: Date,
  date: string,
  companies: CompanyNames,
): Node[] {
  const ids = new Set(resources.map((r) => r.id));
  const rows = [...resources];
  for (const b of bookings) {
    if (!ids.has(b.resourceId)) {
      ids.add(b.resourceId);
      rows.push({ id: b.resourceId, name: b.resourceId, kind: "room", paid: false, timeZone: ctx.zone, capacity: null });
    }
  }
  if (!rows.length) return [h("p", null, "No resources yet.")];
  const marks = hourMarks(from, to, ctx.zone);
  const now = Date.now();
  const nowLeft = now >= from.getTime() && now < to.getTime() ? ((now - from.getTime()) / (to.getTime() - from.getTime())) * 100 : null;
  const scale = h(
    "div",
    { class: "tl-row tl-scale", "aria-hidden": "true" },
    h("div", { class: "tl-label" }),
    h("div", { class: "tl-track" }, ...marks.map((m) => h("span", { class: "tl-mark", style: `left:${m.left}%` }, m.label))),
  );
  return [
    h(
      "section",
      { class: "tl", "aria-label": `Timeline of ${date}`, tabindex: "0" },
      scale,
      ...rows.map((r) => {
        const mine = layoutBlocks(bookings.filter((b) => b.resourceId === r.id), from, to, ctx.zone, companies);
        const labelId = `tl-${r.id}`;
        return h(
          "div",
          { class: "tl-row", "data-timeline-resource": r.id },
          h("div", { class: "tl-label", id: labelId }, r.name),
          h(
            "ol",
            { class: "tl-track", "aria-labelledby": labelId },
            nowLeft === null ? null : h("li", { class: "tl-now", style: `left:${nowLeft.toFixed(2)}%`, "aria-hidden": "true" }),
            ...mine.map((blk) =>
              h(
                "li",
                {
                  class: `tl-block tl-${blk.booking.source}`,
                  style: `left:${blk.left}%;width:${blk.width}%`,
                  "data-booking-source": blk.booking.source,
                  "data-booking-id": blk.booking.id,
                  title: blk.label,
                },
                h("span", { class: "visually-hidden" }, blk.label),
                h("span", { class: "tl-text", "aria-hidden": "true" }, blk.booking.title || sourceText(blk.booking)),
              ),
            ),
            mine.length ? null : h("li", { class: "tl-empty" }, "No bookings"),
          ),
        );
      }),
    ),
  ];
}

function drawTable(ctx: PageContext, resources: Resource[], bookings: BookingItem[], companies: CompanyNames): HTMLElement {
  const names = new Map(resources.map((r) => [r.id, r.name]));
  const live = bookings.filter((b) => b.status !== "cancelled" && b.status !== "released");
  if (!live.length) return h("p", null, "No bookings on this day.");
  return stackable(h(
    "table",
    { class: "bookings" },
    h(
      "thead",
      null,
      h("tr", null, ...["Time", "Resource", "Source", "Title", "Booked by / attributed to", "Outlook sync"].map((c) => h("th", { scope: "col" }, c))),
    ),
    h(
      "tbody",
      null,
      ...live.map((b) =>
        h(
          "tr",
          { "data-booking-id": b.id, "data-booking-source": b.source },
          h("td", null, `${formatTime(b.start, ctx.zone)}–${formatTime(b.end, ctx.zone)}`),
          h("td", null, names.get(b.resourceId) ?? b.resourceId),
          h("td", null, h("span", { class: `swatch swatch-${b.source}` }, sourceText(b))),
          h("td", null, b.title ?? (b.source === "outlook" ? "(subject not stored)" : "")),
          h("td", null, [b.booker ? `${b.booker.name} <${b.booker.email}>` : null, attributionText(b, companies)].filter(Boolean).join("; ")),
          h("td", null, b.source === "platform" ? `${b.syncState ?? ""}${b.lastError ? ` (${b.lastError.reason})` : ""}` : "from Outlook"),
        ),
      ),
    ),
  ));
}
