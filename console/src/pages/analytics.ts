// Analytics: booking rate over time, ad hoc vs planned, popular rooms, by company, no-show rate,
// a table of the chosen grouping and its CSV (GET /buildings/{b}/analytics; docs/ANALYTICS.md).

import { ApiError, seg } from "../api";
import type { PageContext } from "../app";
import { barList, lineChart, stackedColumns } from "../charts";
import { field, h, replace, setFieldError } from "../dom";
import { fieldErrors } from "../problem";
import { buildingHref } from "../router";
import { addDays, formatDuration, todayIn } from "../time";
import type { AnalyticsGroupBy, AnalyticsMetrics, AnalyticsReport } from "../types";
import { alertBox, button, facts, pageHeading, stackable } from "../ui";

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const GROUPINGS: Record<AnalyticsGroupBy, string> = { day: "Day", week: "Week", resource: "Room", company: "Company" };
// Beyond this many days the time charts show weeks: a year of daily columns is unreadable.
const DAILY_UP_TO = 92;

export function percent(value: number | null): string {
  return value === null ? "n/a" : `${Math.round(value * 1000) / 10}%`;
}

export function minutes(value: number | null): string {
  if (value === null) return "n/a";
  return value === 0 ? "0 min" : formatDuration(value * 60);
}

/** The range the page shows: the query's, else the four weeks up to yesterday (closed days). */
export function analyticsRange(query: Record<string, string>, today: string): { from: string; to: string; groupBy: AnalyticsGroupBy } {
  const to = query["to"] ?? addDays(today, -1);
  const from = query["from"] ?? addDays(to, -27);
  const g = query["groupBy"];
  return { from, to, groupBy: g && g in GROUPINGS ? (g as AnalyticsGroupBy) : "day" };
}

/** Days from `from` to `to`, both included. */
export function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000) + 1;
}

export function csvFileName(building: string, from: string, to: string, groupBy: string): string {
  return `analytics-${building}-${from}-to-${to}-by-${groupBy}.csv`;
}

const COLUMNS: [string, (m: AnalyticsMetrics) => string][] = [
  ["Booking rate", (m) => percent(m.bookingRate)],
  ["Bookings", (m) => String(m.bookings)],
  ["Booked (business hours)", (m) => minutes(m.bookedMinutes)],
  ["Booked (outside)", (m) => minutes(m.bookedMinutesOutsideHours)],
  ["Ad hoc", (m) => String(m.adHoc)],
  ["Planned", (m) => String(m.planned)],
  ["No-show rate", (m) => percent(m.noShowRate)],
  ["Released", (m) => String(m.released)],
  ["Median duration", (m) => minutes(m.medianDurationMinutes)],
  ["Median lead time", (m) => minutes(m.medianLeadMinutes)],
];

export async function renderAnalytics(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}/analytics`;
  const range = analyticsRange(ctx.query, todayIn(ctx.zone));
  const from = field("From", h("input", { type: "date", name: "from", value: range.from }), "A day in the building's time zone.");
  const to = field("To", h("input", { type: "date", name: "to", value: range.to }), "Included. At most 366 days after From.");
  const groupBy = field(
    "Group by",
    h("select", { name: "groupBy" }, ...Object.entries(GROUPINGS).map(([v, label]) => h("option", { value: v, selected: v === range.groupBy }, label))),
    "The rows of the table and of the CSV.",
  );
  const fields = { from, to, groupBy };
  const form = h(
    "form",
    { class: "card filters", "aria-label": "Analytics filters" },
    h("div", { class: "form-grid" }, from.wrap, to.wrap, groupBy.wrap),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show analytics")),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.app.navigate(buildingHref(ctx.building, "analytics", { from: from.control.value, to: to.control.value, groupBy: groupBy.control.value }));
  });
  const heading = [pageHeading("Analytics", ctx.zone), definitions(), form];
  const bad = (["from", "to"] as const).filter((k) => !DATE.test(range[k]));
  for (const k of bad) setFieldError(fields[k], "Enter a date.");
  if (bad.length) {
    replace(page, ...heading, alertBox("Fix the filters above."));
    return;
  }
  const query = { from: range.from, to: range.to };
  const series: AnalyticsGroupBy = daysBetween(range.from, range.to) > DAILY_UP_TO ? "week" : "day";
  const wanted = [...new Set<AnalyticsGroupBy>([range.groupBy, series, "company"])];
  let reports: Map<AnalyticsGroupBy, AnalyticsReport>;
  try {
    const answers = await Promise.all(wanted.map((g) => ctx.api.get<AnalyticsReport>(base, { query: { ...query, groupBy: g }, signal: ctx.signal })));
    reports = new Map(wanted.map((g, i) => [g, answers[i] as AnalyticsReport]));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    for (const [f, m] of fieldErrors(err.problem)) {
      const target = (fields as Record<string, { control: HTMLElement; error: HTMLElement }>)[f];
      if (target) setFieldError(target, m);
    }
    replace(page, ...heading, alertBox(ctx.handle(err) ?? "The analytics could not be read."));
    return;
  }
  const chosen = reports.get(range.groupBy) as AnalyticsReport;
  const overTime = (reports.get(series) as AnalyticsReport).groups;
  const companies = (reports.get("company") as AnalyticsReport).groups;
  const t = chosen.totals;
  const download = button("Download CSV", async () => {
    try {
      const csv = await ctx.api.request<Blob>("GET", base, { query: { ...query, groupBy: range.groupBy, format: "csv" }, headers: { Accept: "text/csv" }, blob: true });
      const url = URL.createObjectURL(csv);
      const a = h("a", { href: url, download: csvFileName(ctx.building, range.from, range.to, range.groupBy), hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      ctx.announce("CSV downloaded.");
    } catch (err) {
      const words = ctx.handle(err);
      if (words) ctx.announce(words);
    }
  }, { "data-csv": range.groupBy });
  replace(
    page,
    ...heading,
    h(
      "section",
      { class: "card", "aria-label": "Summary", "data-analytics": "summary" },
      facts([
        ["Booking rate", percent(t.bookingRate)],
        ["Bookings", `${t.bookings} (${t.adHoc} ad hoc, ${t.planned} planned)`],
        ["No-show rate", `${percent(t.noShowRate)} (${t.noShows} of ${t.checkInRequired} that needed a check-in; ${t.released} released)`],
        ["Median duration", minutes(t.medianDurationMinutes)],
        ["Median lead time", minutes(t.medianLeadMinutes)],
        ["Rooms", String(t.resources)],
      ]),
    ),
    h(
      "div",
      { class: "charts" },
      lineChart({ id: "booking-rate", title: "Booking rate", format: percent, max: 1 }, overTime.map((g) => ({ label: g.label, value: g.bookingRate }))),
      stackedColumns(
        { id: "ad-hoc", title: "Ad hoc and planned bookings", format: (v) => String(Math.round(v)) },
        overTime.map((g) => ({ label: g.label, parts: [{ name: "Planned", value: g.planned }, { name: "Ad hoc", value: g.adHoc }] })),
      ),
      lineChart({ id: "no-show", title: "No-show rate", format: percent, max: 1 }, overTime.map((g) => ({ label: g.label, value: g.noShowRate }))),
      barList({ id: "popular", title: "Most popular rooms", format: percent, max: 1 }, chosen.popular.most.map((r) => ({ label: r.name || r.resourceId, value: r.bookingRate }))),
      barList({ id: "unpopular", title: "Least popular rooms", format: percent, max: 1 }, chosen.popular.least.map((r) => ({ label: r.name || r.resourceId, value: r.bookingRate }))),
      barList({ id: "companies", title: "Booked hours by company", format: (v) => `${Math.round(v / 6) / 10} h` }, companies.map((g) => ({ label: g.label, value: g.bookedMinutes + g.bookedMinutesOutsideHours }))),
    ),
    h(
      "section",
      { class: "card" },
      h("div", { class: "actions" }, h("h2", null, `By ${GROUPINGS[range.groupBy].toLowerCase()}`), download),
      groupsTable(chosen),
    ),
  );
}

function groupsTable(report: AnalyticsReport): Node {
  if (!report.groups.length) return h("p", null, "No bookings in this range.");
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Analytics by group" },
    stackable(h(
      "table",
      { class: "analytics" },
      h("thead", null, h("tr", null, h("th", { scope: "col" }, GROUPINGS[report.groupBy]), ...COLUMNS.map(([c]) => h("th", { scope: "col" }, c)))),
      h("tbody", null, ...report.groups.map((g) => h("tr", { "data-group": g.key }, h("th", { scope: "row" }, g.label), ...COLUMNS.map(([, f]) => h("td", null, f(g)))))),
    )),
  );
}

function definitions(): HTMLElement {
  const items: [string, string][] = [
    ["Booking rate", "minutes booked inside business hours ÷ (rooms × business minutes) of the range."],
    ["Ad hoc", "booked less than the building's ad hoc threshold (Settings, default 15 minutes) before its start, or after it started; planned: the rest."],
    ["No-show rate", "bookings released or marked no-show ÷ bookings that needed a check-in (auto-release on)."],
    ["Lead time", "from when the booking was made to its start."],
    ["By company", "the company each booking is attributed to (Companies and users)."],
  ];
  return h("details", { class: "card definitions" }, h("summary", null, "How these numbers are defined"), h("dl", { class: "facts" }, ...items.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)])));
}
