// Resource sync: every resource with its state badge and a calendar dropdown per free resource;
// Save applies all changes and shows each row's result. Add, edit and delete resources.

import { ApiError, seg } from "../api";
import type { PageContext } from "../app";
import { syncBadge } from "../badges";
import { calendarKey, groupCalendars, planChanges, type CalendarGroup, type CalendarOption } from "../calendars";
import { field, h, replace, setFieldError } from "../dom";
import { fieldErrors } from "../problem";
import { reasonSentence } from "../reasons";
import { buildingHref } from "../router";
import { formatDateTime, formatDuration, isValidZone } from "../time";
import type { Calendar, Connection, Resource, RoomList } from "../types";
import { alertBox, badgeEl, button, confirmDialog, messageSlot, pageHeading, stackable } from "../ui";

const KIND_WORDS: Record<Resource["kind"], string> = { room: "Meeting room", desk: "Desk", amenity: "Amenity" };
const POLL_MS = 3000;

interface Row {
  resource: Resource;
  tr: HTMLTableRowElement;
  stateCell: HTMLElement;
  select: HTMLSelectElement | null;
  result: ReturnType<typeof messageSlot>;
  /** The admin changed the dropdown and it is not saved yet: a refresh keeps their choice. */
  dirty: boolean;
}

interface Discovery {
  groups: CalendarGroup[];
  options: Map<string, CalendarOption>;
  problem: string | null;
}

export async function renderResources(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}`;
  const [resources, connection] = await Promise.all([
    ctx.app.resources(ctx.building, ctx.signal, true),
    ctx.api.get<Connection>(`${base}/connection`, { signal: ctx.signal }),
  ]);
  const discovery = connection.status === "disconnected" ? null : await discover(ctx, base);
  const rows = new Map<string, Row>();
  const saveMsg = messageSlot();
  const table = h(
    "table",
    { class: "resources" },
    h("caption", null, `${resources.length} resource${resources.length === 1 ? "" : "s"}`),
    h(
      "thead",
      null,
      h("tr", null, h("th", { scope: "col" }, "Resource"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Outlook calendar"), h("th", { scope: "col" }, "Actions")),
    ),
  );
  const tbody = h("tbody");
  table.append(tbody);
  const form = resourceForm(ctx, base);
  for (const r of resources) {
    const row = buildRow(ctx, base, r, discovery, form.edit);
    rows.set(r.id, row);
    tbody.append(row.tr);
  }
  stackable(table);

  const save = button("Save", async () => {
    const chosen = new Map<string, CalendarOption | null>();
    for (const row of rows.values()) {
      if (!row.select) continue;
      chosen.set(row.resource.id, row.select.value ? (discovery?.options.get(row.select.value) ?? null) : null);
      row.result.set(null);
    }
    const changes = planChanges([...rows.values()].map((r) => r.resource), chosen);
    if (!changes.length) {
      saveMsg.set("No changes to save.", "info");
      return;
    }
    saveMsg.set(`Saving ${changes.length} change${changes.length === 1 ? "" : "s"}…`, "info");
    let failed = 0;
    for (const change of changes) {
      const row = rows.get(change.resourceId);
      if (!row) continue;
      try {
        if (change.action === "unmap") {
          await ctx.api.delete(`${base}/resources/${seg(change.resourceId)}/mapping`);
          row.result.set("Saved: calendar unmapped.", "success");
        }
        if (change.action === "map") {
          const updated = await ctx.api.put<Resource>(`${base}/resources/${seg(change.resourceId)}/mapping`, {
            calendarId: change.calendarId,
            mailbox: change.mailbox,
          });
          row.resource = updated;
          row.result.set("Saved: mapped; the first sync runs now.", "success");
        }
        row.dirty = false;
      } catch (err) {
        failed += 1;
        row.result.set(ctx.handle(err));
      }
    }
    const text = failed
      ? `${changes.length - failed} of ${changes.length} changes saved; ${failed} failed (see the rows).`
      : `All ${changes.length} change${changes.length === 1 ? "" : "s"} saved.`;
    saveMsg.set(text, failed ? "error" : "success");
    ctx.announce(text);
    await refresh();
  });

  async function refresh(): Promise<void> {
    try {
      const fresh = await ctx.app.resources(ctx.building, ctx.signal, true);
      for (const r of fresh) {
        const row = rows.get(r.id);
        if (!row) continue;
        const before = row.resource.sync?.status;
        row.resource = r;
        replace(row.stateCell, ...stateParts(r, ctx.zone));
        if (row.select && !row.dirty && document.activeElement !== row.select) selectCurrent(row.select, r, discovery);
        if (before !== r.sync?.status) {
          ctx.announce(`${r.name}: ${syncBadge(r.sync, r.paid).label}`);
          if (r.sync?.status === "synced" && row.result.el.classList.contains("msg-success")) {
            row.result.set("Saved: synced with Outlook.", "success");
          }
        }
      }
    } catch (err) {
      if (!ctx.signal.aborted) saveMsg.set(ctx.handle(err, refresh));
    }
  }

  // The badges move by themselves (pending → synced) while a first sync runs: poll, since the
  // API has no push channel.
  const timer = window.setInterval(() => {
    if ([...rows.values()].some((r) => r.resource.sync?.status === "pending")) void refresh();
  }, POLL_MS);
  ctx.onCleanup(() => window.clearInterval(timer));

  const notes: Node[] = [];
  if (connection.status === "disconnected") {
    notes.push(
      h(
        "p",
        { class: "alert alert-info", role: "status" },
        "The building is not connected to Microsoft 365, so no calendar can be mapped yet. ",
        h("a", { href: buildingHref(ctx.building, "m365") }, "Connect on the Microsoft 365 page."),
      ),
    );
  } else if (connection.status === "reauth_required") {
    notes.push(alertBox(`The connection needs a new sign-in: ${reasonSentence(connection.reason)}`, "warning"));
  }
  if (discovery?.problem) notes.push(alertBox(`Calendars could not be listed: ${discovery.problem}`, "warning"));

  replace(
    page,
    pageHeading("Resource sync", ctx.zone),
    h("p", null, "Map each free resource to the Outlook calendar it books. Paid resources are not synced."),
    ...notes,
    resources.length
      ? h("form", { class: "mapping-form", "aria-label": "Calendar mappings", onsubmit: (ev: Event) => ev.preventDefault() }, h("div", { class: "table-wrap" }, table), h("div", { class: "actions" }, save, saveMsg.el))
      : h("p", null, "No resources yet: add the first one below."),
    form.section,
  );
}

async function discover(ctx: PageContext, base: string): Promise<Discovery> {
  try {
    const all = await ctx.api.all<Calendar>(`${base}/calendars`, { signal: ctx.signal });
    let lists: { name: string; rooms: Calendar[] }[] = [];
    try {
      const roomLists = await ctx.api.all<RoomList>(`${base}/roomlists`, { signal: ctx.signal });
      lists = await Promise.all(
        roomLists.map(async (l) => ({
          name: l.name ?? l.address,
          rooms: await ctx.api.all<Calendar>(`${base}/calendars`, { query: { roomList: l.address }, signal: ctx.signal }),
        })),
      );
    } catch (err) {
      if (!(err instanceof ApiError)) throw err; // no room lists (e.g. places_not_granted): rooms ungrouped
    }
    const groups = groupCalendars(all, lists);
    const options = new Map(groups.flatMap((g) => g.options.map((o) => [o.key, o] as const)));
    return { groups, options, problem: null };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { groups: [], options: new Map(), problem: ctx.handle(err) };
  }
}

function stateParts(r: Resource, zone: string): Node[] {
  const badge = syncBadge(r.sync, r.paid);
  const parts: Node[] = [badgeEl(badge)];
  if (badge.reason) parts.push(h("p", { class: "why" }, badge.reason));
  if (badge.fix && badge.state !== "not_supported" && badge.state !== "not_synced") parts.push(h("p", { class: "fix" }, h("strong", null, "Fix: "), badge.fix));
  if (r.sync?.calendar && badge.state !== "not_supported") {
    parts.push(h("p", { class: "hint" }, `${r.sync.calendar.name ?? r.sync.calendar.id} (${r.sync.calendar.mailbox ?? ""})`));
  }
  if (r.sync?.lastSyncAt) parts.push(h("p", { class: "hint" }, `Last sync ${formatDateTime(r.sync.lastSyncAt, zone)}, lag ${formatDuration(r.sync.lagSeconds)}`));
  return parts;
}

function buildRow(
  ctx: PageContext,
  base: string,
  r: Resource,
  discovery: Discovery | null,
  edit: (r: Resource) => void,
): Row {
  const result = messageSlot();
  const stateCell = h("td", { class: "state" }, ...stateParts(r, ctx.zone));
  let select: HTMLSelectElement | null = null;
  let calendarCell: HTMLElement;
  if (r.paid) {
    calendarCell = h("td", null, h("p", { class: "hint" }, "Paid resources cannot be synced with Outlook."), result.el);
  } else {
    select = h("select", { "aria-label": `Outlook calendar for ${r.name}`, name: `calendar-${r.id}`, disabled: !discovery || discovery.options.size === 0 && !r.sync?.calendar });
    select.append(h("option", { value: "" }, "Not mapped"));
    for (const g of discovery?.groups ?? []) {
      select.append(
        h(
          "optgroup",
          { label: g.label },
          ...g.options.map((o) =>
            h(
              "option",
              { value: o.key, disabled: o.disabled, title: o.why ?? undefined },
              o.mappedResourceId && o.mappedResourceId !== r.id ? `${o.label} (mapped to ${o.mappedResourceId})` : o.label,
            ),
          ),
        ),
      );
    }
    selectCurrent(select, r, discovery);
    calendarCell = h("td", null, select, result.el);
    select.addEventListener("change", () => {
      row.dirty = true;
      result.set(null);
    });
  }
  const actions = h(
    "td",
    { class: "row-actions" },
    button("Edit", () => edit(r), { class: "secondary", "aria-label": `Edit ${r.name}` }),
    button(
      "Delete",
      async () => {
        const ok = await confirmDialog(
          `Delete ${r.name}?`,
          [
            "The resource is removed from BookingBridge. If it is mapped, its calendar is unmapped first and never read or written again.",
            "Events already in Outlook stay there.",
          ],
          "Delete",
        );
        if (!ok) return;
        try {
          await ctx.api.delete(`${base}/resources/${seg(r.id)}`);
          ctx.app.forgetResources(ctx.building);
          ctx.announce(`${r.name} deleted.`);
          ctx.app.navigate(location.hash);
        } catch (err) {
          result.set(ctx.handle(err));
        }
      },
      { class: "secondary", "aria-label": `Delete ${r.name}` },
    ),
  );
  const tr = h(
    "tr",
    { "data-resource-id": r.id },
    h(
      "th",
      { scope: "row" },
      h("span", { class: "name" }, r.name),
      h("p", { class: "hint" }, `${KIND_WORDS[r.kind] ?? r.kind}${r.capacity ? `, ${r.capacity} seats` : ""}${r.paid ? ", paid" : ""} · id ${r.id}`),
    ),
    stateCell,
    calendarCell,
    actions,
  );
  const row: Row = { resource: r, tr, stateCell, select, result, dirty: false };
  return row;
}

function selectCurrent(select: HTMLSelectElement, r: Resource, discovery: Discovery | null): void {
  const cal = r.sync?.calendar;
  if (!cal) {
    select.value = "";
    return;
  }
  const key = calendarKey(cal.mailbox ?? "", cal.id);
  if (!discovery?.options.has(key) && !select.querySelector(`option[value="${CSS.escape(key)}"]`)) {
    select.append(h("option", { value: key }, `${cal.name ?? cal.id} (${cal.mailbox ?? ""}): mapped now`));
  }
  select.value = key;
}

function resourceForm(ctx: PageContext, base: string): { section: HTMLElement; edit: (r: Resource) => void } {
  const heading = h("h2", { id: "resource-form-title", tabindex: "-1" }, "Add a resource");
  const id = field("Id", h("input", { type: "text", name: "id", required: true, pattern: "[A-Za-z0-9._-]{1,64}", autocomplete: "off" }), "Letters, digits, . _ - (at most 64); cannot be changed later.");
  const name = field("Name", h("input", { type: "text", name: "name", required: true, maxlength: "200" }));
  const kind = field("Kind", h("select", { name: "kind" }, h("option", { value: "room" }, "Meeting room"), h("option", { value: "desk" }, "Desk"), h("option", { value: "amenity" }, "Amenity")));
  const zone = field("Time zone", h("input", { type: "text", name: "timeZone", required: true, value: ctx.zone, autocomplete: "off" }), "IANA zone, e.g. Europe/Amsterdam.");
  const capacity = field("Capacity", h("input", { type: "number", name: "capacity", min: "0", inputmode: "numeric" }), "Seats; leave empty if not relevant.");
  const paid = h("input", { type: "checkbox", name: "paid", id: "resource-paid" });
  const paidError = h("p", { class: "field-error", id: "resource-paid-error", hidden: true });
  paid.setAttribute("aria-describedby", "resource-paid-error");
  type Field = { control: HTMLElement; error: HTMLElement };
  const fields: Record<string, Field> = { resource: id, id, name, kind, timeZone: zone, capacity };
  const msg = messageSlot();
  const submit = h("button", { type: "submit" }, "Add resource");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel editing");
  const form = h(
    "form",
    { "aria-labelledby": "resource-form-title", novalidate: true },
    h("div", { class: "form-grid" }, id.wrap, name.wrap, kind.wrap, zone.wrap, capacity.wrap),
    h("div", { class: "choice" }, paid, h("label", { for: "resource-paid" }, "Paid resource (never synced with Outlook)")),
    paidError,
    h("div", { class: "actions" }, submit, cancel),
    msg.el,
  );
  const reset = () => {
    form.reset();
    zone.control.value = ctx.zone;
    id.control.readOnly = false;
    heading.textContent = "Add a resource";
    submit.textContent = "Add resource";
    cancel.hidden = true;
  };
  cancel.addEventListener("click", reset);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    for (const f of Object.values(fields)) setFieldError(f, null);
    paidError.hidden = true;
    msg.set(null);
    const rid = id.control.value.trim();
    const problems: [{ control: HTMLElement; error: HTMLElement }, string][] = [];
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(rid)) problems.push([id, "Use 1 to 64 letters, digits, dots, underscores or dashes."]);
    if (!name.control.value.trim()) problems.push([name, "Enter a name."]);
    if (!isValidZone(zone.control.value.trim())) problems.push([zone, "Enter an IANA time zone such as Europe/Amsterdam."]);
    if (problems.length) {
      for (const [f, m] of problems) setFieldError(f, m);
      problems[0]?.[0].control.focus();
      return;
    }
    const body = {
      name: name.control.value.trim(),
      kind: kind.control.value,
      paid: paid.checked,
      timeZone: zone.control.value.trim(),
      capacity: capacity.control.value === "" ? null : Number(capacity.control.value),
    };
    submit.disabled = true;
    ctx.api
      .put<Resource>(`${base}/resources/${seg(rid)}`, body)
      .then(() => {
        ctx.app.forgetResources(ctx.building);
        ctx.announce(`${body.name} saved.`);
        ctx.app.navigate(location.hash);
      })
      .catch((err: unknown) => {
        if (err instanceof ApiError) {
          for (const [f, m] of fieldErrors(err.problem)) {
            if (f === "paid") {
              paidError.hidden = false;
              paidError.textContent = m;
            } else {
              const target = fields[f];
              if (target) setFieldError(target, m);
            }
          }
        }
        msg.set(ctx.handle(err));
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  const edit = (r: Resource) => {
    id.control.value = r.id;
    id.control.readOnly = true;
    name.control.value = r.name;
    kind.control.value = r.kind;
    zone.control.value = r.timeZone;
    capacity.control.value = r.capacity === null ? "" : String(r.capacity);
    paid.checked = r.paid;
    heading.textContent = `Edit ${r.name}`;
    submit.textContent = "Save resource";
    cancel.hidden = false;
    heading.focus();
  };
  return { section: h("section", { class: "card", "aria-labelledby": "resource-form-title" }, heading, form), edit };
}
