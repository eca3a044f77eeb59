// Wire shapes of the public API used by the console (shared/api/apispec/*.py).

export interface SyncInfo {
  status: "synced" | "not_synced" | "not_supported" | "pending" | "error";
  reason: string | null;
  calendar: { id: string; name: string | null; mailbox: string | null } | null;
  lastSyncAt: string | null;
  lagSeconds: number | null;
}

export interface Interval {
  start: string;
  end: string;
}

/** GET /buildings/{b} (issue 20): the building's own zone is the one every page shows times in. */
export interface Building {
  id: string;
  name: string;
  timeZone: string;
  businessHours: Record<string, Interval[]>;
  address: string | null;
}

export interface BuildingList {
  value: Building[];
  nextLink: string | null;
}

export interface Resource {
  id: string;
  name: string;
  kind: "room" | "desk" | "amenity";
  paid: boolean;
  timeZone: string;
  capacity: number | null;
  sync?: SyncInfo;
}

export interface Connection {
  status: "connected" | "reauth_required" | "disconnected" | "error";
  mode: "delegated" | "application" | null;
  account: { id: string; displayName: string | null; mail: string | null; userPrincipalName: string | null } | null;
  tenantId: string | null;
  scopes: string[];
  connectedAt: string | null;
  lastRefreshAt: string | null;
  reason: string | null;
}

export interface Calendar {
  id: string | null;
  name: string;
  owner: { name: string | null; address: string | null };
  kind: "room" | "personal" | "shared";
  canEdit: boolean;
  mailbox: string;
  reason?: string | null;
  mappedResourceId?: string | null;
  /** Which room list the console found it in (not from the API). */
  roomList?: string;
}

export interface RoomList {
  name: string | null;
  address: string;
}

export interface Company {
  id: string;
  name: string;
  domains: string[];
}

export interface User {
  email: string;
  name: string;
  companyId: string;
}

export interface ImportReport {
  imported: number;
  rejected: { row: number; error: string }[];
}

export interface BuildingSettings {
  defaultUserEmail: string | null;
  storeExternalSubjects: boolean;
  autoRelease?: AutoReleaseSettings;
  adHocMinutes?: number;
  [key: string]: unknown;
}

export interface Attribution {
  kind: "user" | "company" | "default_user" | "unattributed";
  companyId: string | null;
  userEmail: string | null;
  reason: string;
}

export interface BookingItem {
  id: string;
  source: "platform" | "outlook";
  status: string;
  syncState?: "synced" | "pending" | "failed";
  resourceId: string;
  start: string;
  end: string;
  title?: string | null;
  booker?: { email: string; name: string };
  showAs?: string;
  companyId?: string | null;
  attribution?: Attribution | null;
  lastError?: { reason: string } | null;
}

export interface MappingHealth {
  resourceId: string;
  calendar: { id: string; name: string | null; mailbox: string };
  status: "synced" | "pending" | "error" | "not_synced";
  reason?: string | null;
  mode: "notifications" | "polling" | "pending";
  subscription?: { id: string | null; expiresAt: string | null; status: string; reason: string | null } | null;
  deltaState?: { ageSeconds: number | null; baselineAt: string | null } | null;
  lastSyncAt?: string | null;
  lagSeconds?: number | null;
  lastError?: { reason: string; at: string | null } | null;
  nextPollAt?: string | null;
  rounds: number;
  graphRequests: number;
  poisonMessages?: number;
}

export interface SyncHealth {
  building: string;
  mappings: MappingHealth[];
  poisonMessages: number;
  poisonMessagesCapped?: boolean;
}

export interface AuditRecord {
  time: string;
  actor: string;
  operation: string;
  mailbox?: string | null;
  calendar?: string | null;
  result: string;
  status?: number;
  requestId?: string | null;
}

export interface AutoReleaseSettings {
  enabled: boolean;
  graceMinutes: number;
  earlyMinutes: number;
  recurringStrikes: number | null;
}

/** One group's numbers (GET /buildings/{b}/analytics; definitions in docs/ANALYTICS.md). */
export interface AnalyticsMetrics {
  resources: number;
  businessMinutes: number;
  bookedMinutes: number;
  bookedMinutesOutsideHours: number;
  bookingRate: number | null;
  bookings: number;
  adHoc: number;
  planned: number;
  checkInRequired: number;
  noShows: number;
  released: number;
  noShowRate: number | null;
  medianDurationMinutes: number | null;
  medianLeadMinutes: number | null;
}

export type AnalyticsGroupBy = "day" | "week" | "resource" | "company";

export interface AnalyticsReport {
  buildingId: string;
  from: string;
  to: string;
  timeZone: string;
  groupBy: AnalyticsGroupBy;
  totals: AnalyticsMetrics;
  groups: (AnalyticsMetrics & { key: string; label: string })[];
  popular: {
    most: { resourceId: string; name: string; bookingRate: number | null }[];
    least: { resourceId: string; name: string; bookingRate: number | null }[];
  };
}
