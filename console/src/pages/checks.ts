// The go-live check (issue 14): run it for the building's mapped resources and watch its steps
// complete live; every failure with its reason in words, the sentence and the fix; the run's
// clean-up; recent runs. API: POST/GET /buildings/{b}/checks[/{id}] (docs/API.md "Go-live check").

import { ApiError, seg } from "../api";
import type { PageContext } from "../app";
import { h, replace } from "../dom";
import { buildingHref } from "../router";
import { formatDateTime } from "../time";
import type { Resource } from "../types";
import { facts, messageSlot, pageHeading, runBusy, stackable } from "../ui";

// ---------------------------------------------------------------- wire shapes (shared/checks/model.py)

export type RunStatus = "queued" | "running" | "passed" | "failed" | "abandoned";

export interface CheckStep {
  name: string;
  status: "passed" | "failed" | "skipped";
  startedAt: string;
  durationMs: number;
  graphRequestIds: string[];
  reason?: string | null;
  message?: string | null;
  fix?: string | null;
  detail?: Record<string, unknown>;
}

export interface CheckResource {
  resourceId: string;
  status: "running" | "passed" | "failed";
  currentStep?: string | null;
  steps: CheckStep[];
}

export interface CheckRun {
  id: string;
  building?: string;
  status: RunStatus;
  createdAt: string;
  startedAt?: string | null;
  finishedAt?: string | null;
  durationMs?: number | null;
  actor?: string;
  resourceIds: string[];
  cleanup?: { status: "clean" | "leftovers"; leftovers?: unknown[] } | null;
  resources?: CheckResource[];
}

// ---------------------------------------------------------------- pure parts (checks.test.ts)

/** The steps of every resource, in the order they run (shared/checks/model.py STEPS). */
export const STEPS = [
  "connection",
  "notifications",
  "delta",
  "calendar",
  "write_through",
  "outlook_to_platform",
  "cancel",
] as const;

export const STEP_LABELS: Record<string, string> = {
  connection: "Connection and permissions",
  notifications: "Change notifications",
  delta: "Delta sync token",
  calendar: "Calendar reachable and writable",
  write_through: "Platform booking reaches Outlook",
  outlook_to_platform: "Outlook event reaches the platform",
  cancel: "Cancel on both sides",
};

/** A step row's status: the API's three, and the console's own while a run goes on. */
export type RowStatus = "passed" | "failed" | "skipped" | "running" | "pending" | "not_run";

const ROW_WORDS: Record<RowStatus, string> = {
  passed: "Passed",
  failed: "Failed",
  skipped: "Skipped",
  running: "Running",
  pending: "Waiting",
  not_run: "Not run",
};
// Existing badge colours (styles.css): green, red, grey, blue, light grey.
const ROW_BADGE: Record<RowStatus, string> = {
  passed: "badge-synced",
  failed: "badge-error",
  skipped: "badge-not_supported",
  running: "badge-pending",
  pending: "badge-not_synced",
  not_run: "badge-not_synced",
};

const RUN_WORDS: Record<RunStatus, string> = {
  queued: "Queued",
  running: "Running",
  passed: "Passed",
  failed: "Failed",
  abandoned: "Abandoned",
};
const RUN_BADGE: Record<RunStatus, string> = {
  queued: "badge-pending",
  running: "badge-pending",
  passed: "badge-synced",
  failed: "badge-error",
  abandoned: "badge-error",
};

/** The check's reason codes (shared/checks/model.py EXPLANATIONS) in a few words. */
export const CHECK_REASONS: Record<string, string> = {
  not_connected: "Not connected to Microsoft 365",
  reauth_required: "The connection must sign in again",
  consent_revoked: "Consent revoked",
  insufficient_permissions: "Permissions missing",
  calendar_not_found: "Calendar not found",
  calendar_access_denied: "Calendar access denied",
  calendar_read_only: "Calendar is read-only",
  calendar_write_denied: "Calendar write refused (403)",
  throttled: "Throttled by Microsoft Graph",
  graph_unavailable: "Microsoft Graph unavailable",
  graph_refused: "Microsoft Graph refused the request",
  webhook_unreachable: "Notification URL unreachable",
  subscription_failed: "Subscription refused",
  subscription_missing: "No active subscription",
  subscription_gone: "Subscription gone",
  subscription_url_mismatch: "Subscription delivers elsewhere",
  polling_inactive: "Polling not scheduled",
  never_synced: "Not synced yet",
  delta_token_expired: "Delta token expired",
  no_free_slot: "No free slot for the test",
  slot_taken: "Test slot taken meanwhile",
  write_through_pending: "Outlook write pending",
  write_through_failed: "Outlook write failed",
  event_not_on_calendar: "Event missing from the calendar",
  notifications_not_arriving: "Change notifications not arriving",
  sync_not_converging: "Sync not converging",
  removal_not_arriving: "Deletion notifications not arriving",
  removal_not_converging: "Deletion not converging",
  cancel_event_remains: "Cancelled event still in Outlook",
  cancel_block_remains: "Cancelled booking still busy",
  storage_unavailable: "Storage unavailable",
  internal_error: "Unexpected error",
  depends_on_failed: "An earlier step did not pass",
  read_only_connection: "Read-only connection",
  abandoned: "Run abandoned",
};

export function reasonWords(code: string | null | undefined): string {
  if (!code) return "";
  return CHECK_REASONS[code] ?? code.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

export function isFinished(status: RunStatus): boolean {
  return status === "passed" || status === "failed" || status === "abandoned";
}

export interface StepRow {
  name: string;
  label: string;
  status: RowStatus;
  step: CheckStep | null;
}

/**
 * Every step of a resource in order, done or not: the API lists steps as they complete and names
 * the one running (`currentStep`); the rest wait, or were never run once the run is over.
 */
export function stepRows(resource: CheckResource | undefined, runFinished: boolean): StepRow[] {
  const done = new Map((resource?.steps ?? []).map((s) => [s.name, s]));
  const names: string[] = [...STEPS, ...[...done.keys()].filter((n) => !(STEPS as readonly string[]).includes(n))];
  return names.map((name) => {
    const step = done.get(name) ?? null;
    let status: RowStatus;
    if (step) status = step.status;
    else if (runFinished || resource?.status === "passed" || resource?.status === "failed") status = "not_run";
    else if (resource?.currentStep === name) status = "running";
    else status = "pending";
    return { name, label: STEP_LABELS[name] ?? name.replace(/_/g, " "), status, step };
  });
}

/** "350 ms", "4.2 s", "1 min 5 s". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min${whole % 60 ? ` ${whole % 60} s` : ""}`;
}

export function runWords(status: RunStatus): string {
  return RUN_WORDS[status] ?? status;
}

export function cleanupWords(run: Pick<CheckRun, "status" | "cleanup">): string {
  const c = run.cleanup;
  if (!c) return isFinished(run.status) ? "Clean-up not reported" : "Clean-up after the run";
  if (c.status === "clean") return "Clean: nothing was left in Outlook or in BookingBridge";
  const n = c.leftovers?.length ?? 0;
  return `${n} test item${n === 1 ? "" : "s"} left behind; the sweeper removes ${n === 1 ? "it" : "them"}`;
}

/** One sentence on where the run is, for the live region (only said when it changes). */
export function progressText(run: CheckRun, names: Map<string, string>): string {
  if (run.status === "queued") return "The check is queued and starts in a moment.";
  if (isFinished(run.status)) {
    const took = run.durationMs !== null && run.durationMs !== undefined ? ` in ${formatMs(run.durationMs)}` : "";
    return `The check ${run.status === "abandoned" ? "was abandoned" : run.status}${took}. ${cleanupWords(run)}.`;
  }
  const resources = run.resources ?? [];
  const total = STEPS.length * Math.max(resources.length, run.resourceIds.length, 1);
  const done = resources.reduce((n, r) => n + r.steps.length, 0);
  const current = resources.find((r) => r.status === "running" && r.currentStep);
  const now = current?.currentStep
    ? ` Now: ${STEP_LABELS[current.currentStep] ?? current.currentStep} for ${names.get(current.resourceId) ?? current.resourceId}.`
    : "";
  const failed = resources.flatMap((r) => r.steps).filter((s) => s.status === "failed").length;
  return `Running: ${done} of ${total} steps done${failed ? `, ${failed} failed` : ""}.${now}`;
}

/** One step's row: label, status, duration, and for a failure or skip the reason, sentence and fix. */
export function renderStep(row: StepRow, zone: string): HTMLElement {
  const s = row.step;
  const lag = s?.detail?.["lagSeconds"];
  const ids = s?.graphRequestIds ?? [];
  return h(
    "li",
    { class: "card check-step", "data-step": row.name, "data-status": row.status },
    h(
      "div",
      { class: "step-head" },
      h("strong", null, row.label),
      " ",
      h("span", { class: `badge ${ROW_BADGE[row.status]}` }, ROW_WORDS[row.status]),
      // A skipped step did not run: no duration to show.
      s && s.status !== "skipped" ? h("span", { class: "hint" }, ` ${formatMs(s.durationMs)}, started ${formatDateTime(s.startedAt, zone)}`) : null,
      typeof lag === "number" ? h("span", { class: "hint" }, `, Outlook → platform lag ${lag.toFixed(1)} s`) : null,
    ),
    s && s.status !== "passed" && (s.reason || s.message || s.fix)
      ? h(
          "div",
          { class: s.status === "failed" ? "why alert alert-error" : "why alert alert-info" },
          s.reason ? h("p", { class: "reason", "data-reason": s.reason }, h("strong", null, reasonWords(s.reason)), ` (${s.reason})`) : null,
          s.message ? h("p", { class: "message" }, s.message) : null,
          s.fix ? h("p", { class: "fix" }, h("strong", null, "Fix: "), s.fix) : null,
        )
      : null,
    ids.length
      ? h(
          "details",
          null,
          h("summary", null, `Graph request id${ids.length === 1 ? "" : "s"} (${ids.length})`),
          h("ul", { class: "scopes" }, ...ids.map((id) => h("li", null, h("code", null, id)))),
        )
      : null,
  );
}

// ---------------------------------------------------------------- the page

// While a run goes on the page asks for it again every second: the API has no push channel
// (server-sent events would hold a Functions invocation open per watching admin), a step takes
// about a second or more, and polling stops as soon as the run has finished.
const POLL_MS = 1000;
const RECENT = 10;

export async function renderChecks(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}/checks`;
  let resources: Resource[] = ctx.resources;
  try {
    resources = await ctx.app.resources(ctx.building, ctx.signal, true); // mappings change often
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
  }
  const names = new Map(resources.map((r) => [r.id, r.name]));
  const mapped = resources.filter((r) => !r.paid && r.sync?.calendar);
  const recent = await ctx.api.page<CheckRun>(base, { query: { top: RECENT }, signal: ctx.signal });

  const msg = messageSlot();
  const runHolder = h("div", { class: "check-run-holder" });
  const recentBody = h("div");
  let shownId: string | null = null;
  let generation = 0; // a newer run view stops the polling of the one before
  let timer = 0;
  const stopPolling = () => {
    generation += 1;
    window.clearTimeout(timer);
  };
  ctx.onCleanup(stopPolling);

  let lastRecent = recent.value;
  const drawRecent = (runs: CheckRun[]) => {
    lastRecent = runs;
    if (!runs.length) {
      replace(recentBody, h("p", null, "No go-live check has run for this building yet."));
      return;
    }
    const table = h(
      "table",
      { class: "checks" },
      h("caption", null, "Newest first"),
      h(
        "thead",
        null,
        h("tr", null, ...["Started", "Status", "Resources", "Duration", "Clean-up", "Run"].map((c) => h("th", { scope: "col" }, c))),
      ),
      h(
        "tbody",
        null,
        ...runs.map((r) => {
          const when = formatDateTime(r.startedAt ?? r.createdAt, ctx.zone);
          const link = h(
            "a",
            { href: buildingHref(ctx.building, "checks", { run: r.id }), "aria-current": r.id === shownId ? "true" : null },
            "See run",
            h("span", { class: "visually-hidden" }, ` of ${when}`),
          );
          link.addEventListener("click", (ev) => {
            if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
            ev.preventDefault();
            history.pushState(history.state, "", link.getAttribute("href") ?? "");
            void show(r.id, true);
          });
          return h(
            "tr",
            { "data-check-row": r.id, "data-status": r.status },
            h("td", null, when),
            h("td", null, h("span", { class: `badge ${RUN_BADGE[r.status]}` }, runWords(r.status))),
            h("td", null, r.resourceIds.map((id) => names.get(id) ?? id).join(", ")),
            h("td", null, formatMs(r.durationMs)),
            h("td", null, cleanupWords(r)),
            h("td", null, link),
          );
        }),
      ),
    );
    replace(recentBody, h("div", { class: "table-wrap" }, stackable(table)));
  };
  const refreshRecent = async () => {
    try {
      drawRecent((await ctx.api.page<CheckRun>(base, { query: { top: RECENT }, signal: ctx.signal })).value);
    } catch (err) {
      if (!ctx.signal.aborted) msg.set(ctx.handle(err, refreshRecent));
    }
  };

  /** Show one run, and follow it while it runs. */
  const show = async (id: string, focus = false): Promise<void> => {
    stopPolling();
    const mine = generation;
    shownId = id;
    let run: CheckRun;
    try {
      run = await ctx.api.get<CheckRun>(`${base}/${seg(id)}`, { signal: ctx.signal });
    } catch (err) {
      if (ctx.signal.aborted || mine !== generation) return;
      replace(runHolder);
      msg.set(err instanceof ApiError && err.status === 404 ? "There is no go-live check with that id in this building." : ctx.handle(err, () => show(id)));
      return;
    }
    if (mine !== generation) return;
    msg.set(null);
    const view = new RunView(run, names, ctx.zone);
    replace(runHolder, view.el);
    if (focus) view.heading.focus();
    drawRecent(lastRecent.map((r) => (r.id === run.id ? run : r)));
    const poll = async () => {
      if (mine !== generation || ctx.signal.aborted) return;
      try {
        const next = await ctx.api.get<CheckRun>(`${base}/${seg(id)}`, { signal: ctx.signal });
        if (mine !== generation) return;
        view.update(next);
        if (isFinished(next.status)) {
          ctx.announce(progressText(next, names));
          void refreshRecent();
          return;
        }
      } catch (err) {
        if (ctx.signal.aborted || mine !== generation) return;
        const words = ctx.handle(err, () => show(id));
        msg.set(words ? `The check's progress could not be read: ${words}` : null);
        return;
      }
      timer = window.setTimeout(() => void poll(), POLL_MS);
    };
    if (!isFinished(run.status)) timer = window.setTimeout(() => void poll(), POLL_MS);
  };

  // The form: which resources (every mapped one by default), and the button.
  const boxes = mapped.map((r) =>
    h("input", { type: "checkbox", id: `check-res-${r.id}`, value: r.id, checked: true }),
  );
  const start = h("button", { type: "submit" }, "Run go-live check");
  const conflict = h("div");
  const form = h(
    "form",
    { class: "check-form", "aria-label": "Start a go-live check" },
    mapped.length
      ? h(
          "fieldset",
          null,
          h("legend", null, "Resources to check"),
          ...mapped.map((r, i) =>
            h(
              "div",
              { class: "choice" },
              boxes[i],
              h("label", { for: `check-res-${r.id}` }, h("strong", null, r.name), ` (${r.sync?.calendar?.mailbox ?? r.id})`),
            ),
          ),
        )
      : h(
          "p",
          null,
          "No resource is mapped to an Outlook calendar yet, so there is nothing to check. ",
          h("a", { href: buildingHref(ctx.building, "resources") }, "Map calendars on Resource sync."),
        ),
    h("div", { class: "actions" }, start),
  );
  start.disabled = !mapped.length;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!chosen.length) {
      msg.set("Choose at least one resource to check.");
      return;
    }
    void runBusy(start, async () => {
      msg.set(null);
      conflict.replaceChildren();
      const body = chosen.length === mapped.length ? {} : { resourceIds: chosen };
      try {
        const created = await ctx.api.post<CheckRun>(base, body);
        ctx.announce("Go-live check started.");
        history.replaceState(history.state, "", buildingHref(ctx.building, "checks", { run: created.id }));
        lastRecent = [created, ...lastRecent.filter((r) => r.id !== created.id)].slice(0, RECENT);
        await show(created.id);
      } catch (err) {
        const running = err instanceof ApiError && err.status === 409 ? err.problem.extra["runningCheckId"] : null;
        if (typeof running === "string" && running) {
          msg.set(null);
          const link = h("a", { href: buildingHref(ctx.building, "checks", { run: running }) }, "see it");
          link.addEventListener("click", (e) => {
            e.preventDefault();
            history.pushState(history.state, "", link.getAttribute("href") ?? "");
            conflict.replaceChildren();
            void show(running, true);
          });
          replace(
            conflict,
            h("div", { class: "alert alert-warning", role: "alert", "data-check-running": running }, "A check is already running for this building: ", link, ". Only one runs at a time."),
          );
          void refreshRecent();
          return;
        }
        msg.set(ctx.handle(err));
      }
    });
  });

  replace(
    page,
    pageHeading("Go-live check", ctx.zone),
    h(
      "p",
      null,
      "Proves the integration end to end for each mapped resource: the connection and its permissions, change notifications, the delta token, the calendar, a test booking reaching Outlook, a test Outlook event reaching BookingBridge, and cancelling both. Test items are marked, never counted, and removed afterwards.",
    ),
    form,
    conflict,
    msg.el,
    runHolder,
    h("section", { "aria-labelledby": "recent-checks" }, h("h2", { id: "recent-checks" }, "Recent runs"), recentBody),
  );
  drawRecent(recent.value);
  const wanted = ctx.query["run"] ?? recent.value.find((r) => !isFinished(r.status))?.id;
  if (wanted) await show(wanted);
}

/** One run: its summary, a live progress line, and per resource its step rows (updated in place). */
class RunView {
  readonly el: HTMLElement;
  readonly heading: HTMLElement;
  private readonly summary = h("div");
  private readonly progress = h("p", { class: "progress", "aria-live": "polite", "data-progress": "" });
  private readonly sections = h("div");
  private readonly rows = new Map<string, { sig: string; el: HTMLElement }>();
  private readonly badges = new Map<string, HTMLElement>();
  private readonly lists = new Map<string, HTMLElement>();

  constructor(
    private run: CheckRun,
    private readonly names: Map<string, string>,
    private readonly zone: string,
  ) {
    this.heading = h("h2", { tabindex: "-1", id: `check-${run.id}` }, "Run of ", formatDateTime(run.createdAt, zone));
    this.el = h(
      "section",
      { class: "card check-run", "data-check-id": run.id, "aria-labelledby": `check-${run.id}` },
      this.heading,
      this.summary,
      this.progress,
      this.sections,
    );
    this.update(run);
  }

  update(run: CheckRun): void {
    this.run = run;
    this.el.setAttribute("data-check-status", run.status);
    this.el.setAttribute("data-cleanup", run.cleanup?.status ?? "");
    this.el.setAttribute("aria-busy", isFinished(run.status) ? "false" : "true");
    replace(
      this.summary,
      facts([
        ["Status", h("span", { class: `badge ${RUN_BADGE[run.status]}`, "data-run-status": run.status }, runWords(run.status))],
        ["Started", run.startedAt ? formatDateTime(run.startedAt, this.zone) : "not yet"],
        ["Finished", run.finishedAt ? formatDateTime(run.finishedAt, this.zone) : "not yet"],
        ["Duration", formatMs(run.durationMs)],
        ["Clean-up", h("span", { "data-cleanup-status": run.cleanup?.status ?? "" }, cleanupWords(run))],
        ["Started by", run.actor ?? null],
      ]),
    );
    const text = progressText(run, this.names);
    if (this.progress.textContent !== text) this.progress.textContent = text;
    const finished = isFinished(run.status);
    const byId = new Map((run.resources ?? []).map((r) => [r.resourceId, r]));
    const ids = [...run.resourceIds, ...[...byId.keys()].filter((id) => !run.resourceIds.includes(id))];
    for (const id of ids) {
      const resource = byId.get(id);
      let list = this.lists.get(id);
      if (!list) {
        const headingId = `check-${run.id}-${id}`;
        const badge = h("span", { class: "badge" });
        this.badges.set(id, badge);
        list = h("ol", { class: "check-steps", style: "list-style: none; padding: 0; margin: 0" });
        this.lists.set(id, list);
        this.sections.append(
          h(
            "section",
            { "data-resource-id": id, "aria-labelledby": headingId },
            h("h3", { id: headingId }, this.names.get(id) ?? id, " ", badge),
            list,
          ),
        );
      }
      const badge = this.badges.get(id);
      const rStatus: RowStatus = resource?.status ?? (finished ? "not_run" : "pending");
      if (badge) {
        badge.className = `badge ${ROW_BADGE[rStatus]}`;
        badge.textContent = ROW_WORDS[rStatus];
        badge.setAttribute("data-resource-status", rStatus);
      }
      for (const row of stepRows(resource, finished)) {
        const key = `${id}/${row.name}`;
        const sig = JSON.stringify([row.status, row.step]);
        const old = this.rows.get(key);
        if (old?.sig === sig) continue;
        const el = renderStep(row, this.zone);
        if (old) old.el.replaceWith(el);
        else list.append(el);
        this.rows.set(key, { sig, el });
      }
    }
  }
}
