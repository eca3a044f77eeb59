// Resource sync state → the badge an admin sees (label, data-state hook, and why).

import { reasonText } from "./reasons";

export type SyncState = "synced" | "pending" | "not_synced" | "not_supported" | "error";

export const STATE_LABELS: Record<SyncState, string> = {
  synced: "Synced",
  pending: "Pending",
  not_synced: "Not synced",
  not_supported: "Not supported",
  error: "Error",
};

export interface Badge {
  state: SyncState;
  label: string;
  /** Why, in words, when there is something to say (error, pending, not synced). */
  reason: string | null;
  /** What to do about it. */
  fix: string | null;
}

export function syncBadge(sync: { status?: string | null; reason?: string | null } | null | undefined, paid = false): Badge {
  const raw = paid ? "not_supported" : (sync?.status ?? "not_synced");
  const state: SyncState = raw in STATE_LABELS ? (raw as SyncState) : "error";
  const code = sync?.reason ?? (state === "not_supported" ? "paid_resource" : null);
  const explained = state === "synced" ? null : reasonText(code);
  return {
    state,
    label: STATE_LABELS[state],
    reason: explained?.text ?? (state === "error" ? "Sync failed for an unknown reason." : null),
    fix: explained?.fix ?? null,
  };
}
