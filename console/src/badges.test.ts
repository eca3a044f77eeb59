import { describe, expect, it } from "vitest";
import { syncBadge } from "./badges";

describe("syncBadge", () => {
  it("labels every state", () => {
    expect(syncBadge({ status: "synced", reason: null })).toMatchObject({ state: "synced", label: "Synced", reason: null });
    expect(syncBadge({ status: "pending", reason: "awaiting_first_sync" })).toMatchObject({ state: "pending", label: "Pending" });
    expect(syncBadge({ status: "not_synced", reason: "not_mapped" })).toMatchObject({
      state: "not_synced",
      label: "Not synced",
      fix: "Pick a calendar and save.",
    });
    expect(syncBadge({ status: "not_supported", reason: "paid_resource" }).label).toBe("Not supported");
  });

  it("makes a paid resource Not supported whatever its sync says", () => {
    expect(syncBadge(null, true)).toMatchObject({ state: "not_supported", reason: "Paid resources are not synced with Outlook." });
  });

  it("explains an error with its reason and fix", () => {
    const b = syncBadge({ status: "error", reason: "access_denied" });
    expect(b.label).toBe("Error");
    expect(b.reason).toContain("may not read or write");
    expect(b.fix).toContain("Exchange RBAC");
  });

  it("treats an unknown status as an error, never as synced", () => {
    expect(syncBadge({ status: "weird" }).state).toBe("error");
    expect(syncBadge(undefined).state).toBe("not_synced");
  });
});
