import { describe, expect, it } from "vitest";
import {
  STEPS,
  cleanupWords,
  formatMs,
  isFinished,
  progressText,
  reasonWords,
  renderStep,
  stepRows,
  type CheckResource,
  type CheckRun,
  type CheckStep,
} from "./checks";

const at = "2026-12-04T08:00:00.000Z";
const passed = (name: string, ms = 1200): CheckStep => ({ name, status: "passed", startedAt: at, durationMs: ms, graphRequestIds: ["req-1"] });

describe("stepRows", () => {
  it("lists every step in order, the done ones with their status, the current one running", () => {
    const resource: CheckResource = {
      resourceId: "board",
      status: "running",
      currentStep: "delta",
      steps: [passed("connection"), passed("notifications")],
    };
    const rows = stepRows(resource, false);
    expect(rows.map((r) => r.name)).toEqual([...STEPS]);
    expect(rows.map((r) => r.status)).toEqual(["passed", "passed", "running", "pending", "pending", "pending", "pending"]);
    expect(rows[0]?.label).toBe("Connection and permissions");
  });

  it("shows a failure and the skips after it; a finished run's missing steps were not run", () => {
    const resource: CheckResource = {
      resourceId: "board",
      status: "failed",
      steps: [
        passed("connection"),
        { name: "calendar", status: "failed", startedAt: at, durationMs: 300, graphRequestIds: [], reason: "calendar_write_denied" },
        { name: "write_through", status: "skipped", startedAt: at, durationMs: 0, graphRequestIds: [], reason: "depends_on_failed" },
      ],
    };
    const status = Object.fromEntries(stepRows(resource, true).map((r) => [r.name, r.status]));
    expect(status).toMatchObject({ connection: "passed", calendar: "failed", write_through: "skipped", notifications: "not_run" });
  });

  it("waits for every step of a resource the run has not reached", () => {
    expect(stepRows(undefined, false).every((r) => r.status === "pending")).toBe(true);
    expect(stepRows(undefined, true).every((r) => r.status === "not_run")).toBe(true);
  });
});

describe("status mapping and words", () => {
  it("knows which run statuses are final", () => {
    expect(["queued", "running"].map((s) => isFinished(s as CheckRun["status"]))).toEqual([false, false]);
    expect(["passed", "failed", "abandoned"].every((s) => isFinished(s as CheckRun["status"]))).toBe(true);
  });

  it("says reason codes in words, unknown ones readable", () => {
    expect(reasonWords("webhook_unreachable")).toBe("Notification URL unreachable");
    expect(reasonWords("something_new")).toBe("Something new");
    expect(reasonWords(null)).toBe("");
  });

  it("formats durations and the clean-up", () => {
    expect(formatMs(350)).toBe("350 ms");
    expect(formatMs(4230)).toBe("4.2 s");
    expect(formatMs(65_000)).toBe("1 min 5 s");
    expect(formatMs(null)).toBe("—");
    expect(cleanupWords({ status: "passed", cleanup: { status: "clean", leftovers: [] } })).toMatch(/^Clean/);
    expect(cleanupWords({ status: "failed", cleanup: { status: "leftovers", leftovers: [{}, {}] } })).toBe(
      "2 test items left behind; the sweeper removes them",
    );
    expect(cleanupWords({ status: "running", cleanup: null })).toBe("Clean-up after the run");
  });

  it("says where a run is", () => {
    const run: CheckRun = {
      id: "c1",
      status: "running",
      createdAt: at,
      resourceIds: ["board"],
      resources: [{ resourceId: "board", status: "running", currentStep: "calendar", steps: [passed("connection"), passed("notifications"), passed("delta")] }],
    };
    expect(progressText(run, new Map([["board", "Board room"]]))).toBe(
      "Running: 3 of 7 steps done. Now: Calendar reachable and writable for Board room.",
    );
    expect(progressText({ ...run, status: "passed", durationMs: 9100, cleanup: { status: "clean" } }, new Map())).toMatch(
      /^The check passed in 9\.1 s\. Clean: nothing was left/,
    );
  });
});

describe("renderStep", () => {
  it("renders a passed step with its hooks, duration and lag", () => {
    const el = renderStep(
      { name: "outlook_to_platform", label: "Outlook event reaches the platform", status: "passed", step: { ...passed("outlook_to_platform", 2500), detail: { lagSeconds: 1.25 } } },
      "Europe/Amsterdam",
    );
    expect(el.getAttribute("data-step")).toBe("outlook_to_platform");
    expect(el.getAttribute("data-status")).toBe("passed");
    expect(el.textContent).toContain("Passed");
    expect(el.textContent).toContain("2.5 s");
    expect(el.textContent).toContain("09:00:00"); // started, in Amsterdam
    expect(el.textContent).toContain("lag 1.3 s");
    expect(el.querySelector(".why")).toBeNull();
    expect(el.querySelector("details summary")?.textContent).toBe("Graph request id (1)");
  });

  it("renders a failure's reason in words, its sentence and its fix", () => {
    const el = renderStep(
      {
        name: "calendar",
        label: "Calendar reachable and writable",
        status: "failed",
        step: {
          name: "calendar",
          status: "failed",
          startedAt: at,
          durationMs: 300,
          graphRequestIds: [],
          reason: "calendar_write_denied",
          message: "Graph refused to write to the calendar of room@contoso.com (403 ErrorAccessDenied).",
          fix: "Add room@contoso.com to the management scope.",
        },
      },
      "UTC",
    );
    expect(el.getAttribute("data-status")).toBe("failed");
    expect(el.querySelector("[data-reason=calendar_write_denied]")?.textContent).toBe("Calendar write refused (403) (calendar_write_denied)");
    expect(el.querySelector(".message")?.textContent).toContain("Graph refused to write");
    expect(el.querySelector(".fix")?.textContent).toBe("Fix: Add room@contoso.com to the management scope.");
    expect(el.querySelector("details")).toBeNull();
  });

  it("renders a step not reached yet without facts", () => {
    const el = renderStep({ name: "cancel", label: "Cancel on both sides", status: "pending", step: null }, "UTC");
    expect(el.getAttribute("data-status")).toBe("pending");
    expect(el.textContent).toBe("Cancel on both sides Waiting");
  });
});
