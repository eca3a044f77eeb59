// The audit trail of calendar reads and writes, with from/to/limit filters (in the building's zone).

import { ApiError, seg } from "../api";
import type { PageContext } from "../app";
import { field, h, replace, setFieldError } from "../dom";
import { fieldErrors } from "../problem";
import { buildingHref } from "../router";
import { formatDateTime, isoZ, zonedToUtc } from "../time";
import type { AuditRecord } from "../types";
import { alertBox, pageHeading, stackable } from "../ui";

const LOCAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/;

export async function renderAudit(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}`;
  const q = ctx.query;
  const from = field("From", h("input", { type: "datetime-local", name: "from", value: q["from"] ?? "" }), "Default: 24 hours before To.");
  const to = field("To", h("input", { type: "datetime-local", name: "to", value: q["to"] ?? "" }), "Default: now.");
  const limit = field("At most", h("input", { type: "number", name: "limit", min: "1", max: "1000", value: q["limit"] ?? "100", inputmode: "numeric" }), "Records, newest first (1 to 1000).");
  const fields = { from, to, limit };
  const form = h(
    "form",
    { class: "card filters", "aria-label": "Audit filters" },
    h("div", { class: "form-grid" }, from.wrap, to.wrap, limit.wrap),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show records")),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.app.navigate(
      buildingHref(ctx.building, "audit", { from: from.control.value, to: to.control.value, limit: limit.control.value }),
    );
  });
  const query: Record<string, string> = {};
  let invalid = false;
  for (const key of ["from", "to"] as const) {
    const v = q[key];
    if (!v) continue;
    if (!LOCAL.test(v)) {
      setFieldError(fields[key], "Enter a date and time.");
      invalid = true;
      continue;
    }
    query[key] = isoZ(zonedToUtc(v, ctx.zone));
  }
  if (q["limit"]) query["top"] = q["limit"];
  let results: Node;
  if (invalid) {
    results = alertBox("Fix the filters above.");
  } else {
    try {
      const { value: records } = await ctx.api.page<AuditRecord>(`${base}/audit`, { query, signal: ctx.signal });
      results = recordsTable(ctx, records);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      for (const [f, m] of fieldErrors(err.problem)) {
        const target = (fields as Record<string, typeof from>)[f];
        if (target) setFieldError(target, m);
      }
      results = alertBox(ctx.handle(err) ?? "The audit trail could not be read.");
    }
  }
  replace(page, pageHeading("Audit trail", ctx.zone), h("p", null, "Every Microsoft Graph calendar read and write, and every connection change."), form, results);
}

function recordsTable(ctx: PageContext, records: AuditRecord[]): Node {
  if (!records.length) return h("p", null, "No audit records in this range.");
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Audit records" },
    stackable(h(
      "table",
      { class: "audit" },
      h("caption", null, `${records.length} record${records.length === 1 ? "" : "s"}, newest first`),
      h("thead", null, h("tr", null, ...["Time", "Actor", "Operation", "Mailbox", "Calendar", "Result", "Graph request id"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        null,
        ...records.map((r) =>
          h(
            "tr",
            { "data-operation": r.operation },
            h("td", { class: "nowrap" }, formatDateTime(r.time, ctx.zone)),
            h("td", null, r.actor),
            h("td", null, h("code", null, r.operation)),
            h("td", null, r.mailbox ?? ""),
            h("td", null, r.calendar ? h("code", { class: "clip", title: r.calendar }, r.calendar) : ""),
            h("td", null, `${r.result}${r.status ? ` (${r.status})` : ""}`),
            h("td", null, r.requestId ? h("code", { class: "clip", title: r.requestId }, r.requestId) : ""),
          ),
        ),
      ),
    )),
  );
}
