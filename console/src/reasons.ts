// Reason codes of the API (problem+json `reason`, sync and connection reasons) in plain words,
// with what the admin can do about each.

export interface ReasonText {
  text: string;
  fix?: string;
}

const REASONS: Record<string, ReasonText> = {
  // resource sync (GET resources `sync.reason`, GET sync)
  paid_resource: { text: "Paid resources are not synced with Outlook." },
  not_supported: { text: "Paid resources cannot be mapped to an Outlook calendar." },
  not_mapped: { text: "No Outlook calendar is mapped yet.", fix: "Pick a calendar and save." },
  awaiting_first_sync: { text: "Mapped; waiting for the first sync round.", fix: "This takes a few seconds." },
  calendar_not_found: {
    text: "The mapped calendar no longer exists in Microsoft 365.",
    fix: "Pick another calendar, or restore the mailbox.",
  },
  access_denied: {
    text: "The connection may not read or write this calendar.",
    fix: "Share the calendar with the connected account (delegated), or add the mailbox to the app's Exchange RBAC scope (application).",
  },
  not_writable: {
    text: "The connection can read this calendar but not write to it.",
    fix: "Give the connected account edit rights on the calendar.",
  },
  reauth_required: {
    text: "Microsoft 365 asks for the connection to be signed in again.",
    fix: "Reconnect on the Microsoft 365 page.",
  },
  disconnected: { text: "The building is disconnected from Microsoft 365.", fix: "Connect on the Microsoft 365 page." },
  not_connected: { text: "The building is not connected to Microsoft 365.", fix: "Connect on the Microsoft 365 page." },
  subscription_failed: {
    text: "Microsoft Graph refused the change-notification subscription.",
    fix: "Force a resync on the Sync health page; polling keeps the calendar in sync meanwhile.",
  },
  throttled: { text: "Microsoft Graph is throttling requests.", fix: "Nothing to do: sync resumes by itself." },
  graph_unavailable: { text: "Microsoft Graph did not answer.", fix: "Sync retries by itself." },
  storage_unavailable: { text: "BookingBridge's storage did not answer.", fix: "Try again in a minute." },
  identity_unavailable: { text: "Microsoft Entra ID did not answer.", fix: "Try again in a minute." },
  calendar_not_mapped: { text: "The calendar is no longer mapped." },
  calendar_changed: { text: "The resource was mapped to another calendar meanwhile." },
  // mapping
  calendar_mapped: {
    text: "This calendar is already mapped to another resource.",
    fix: "Unmap it from that resource first, or pick another calendar.",
  },
  resource_mapped: { text: "A mapped resource cannot become paid.", fix: "Remove its mapping first." },
  places_not_granted: {
    text: "The connection may not list the tenant's rooms (Place.Read.All is not granted).",
    fix: "Grant Place.Read.All, or look up a room by its address.",
  },
  mailbox_not_found: { text: "No mailbox has that address in the connected tenant." },
  room_list_not_found: { text: "No room list has that address." },
  unavailable: { text: "Microsoft Graph did not answer for this calendar.", fix: "Try again." },
  // connection (GET connection `reason`, ?status=error&reason=)
  refresh_token_expired: { text: "The sign-in expired after a long time without use.", fix: "Reconnect." },
  grant_expired: { text: "The sign-in expired.", fix: "Reconnect." },
  grant_revoked: {
    text: "The connected account's sign-in was revoked (for example a password reset or an administrator revoking sessions).",
    fix: "Reconnect.",
  },
  invalid_grant: { text: "Microsoft 365 no longer accepts the stored sign-in.", fix: "Reconnect." },
  interaction_required: { text: "Microsoft 365 asks the account to sign in again.", fix: "Reconnect." },
  consent_required: { text: "The permissions BookingBridge needs are no longer granted.", fix: "Reconnect and grant them." },
  consent_declined: { text: "The sign-in was cancelled or the permissions were declined.", fix: "Connect again and accept." },
  admin_consent_required: {
    text: "A tenant administrator must approve BookingBridge first.",
    fix: "Ask your Microsoft 365 administrator to connect with application consent.",
  },
  sign_in_frequency: { text: "A sign-in frequency policy requires signing in again.", fix: "Reconnect." },
  mfa_required: { text: "Multi-factor authentication is required.", fix: "Reconnect and complete MFA." },
  mfa_registration_required: { text: "The account must register for multi-factor authentication.", fix: "Register, then reconnect." },
  mfa_expired: { text: "The multi-factor sign-in expired.", fix: "Reconnect." },
  blocked_by_conditional_access: { text: "A Conditional Access policy blocks the sign-in.", fix: "Ask your Microsoft 365 administrator." },
  app_not_in_tenant: { text: "BookingBridge is not registered in that tenant.", fix: "Connect with application consent first." },
  invalid_client_credential: { text: "BookingBridge's app credential was refused.", fix: "The operator must renew the app secret or certificate." },
  client_credential_expired: { text: "BookingBridge's app credential expired.", fix: "The operator must renew it." },
  tenant_not_found: { text: "No Microsoft 365 tenant has that id or domain." },
  tenant_mismatch: { text: "The administrator who signed in belongs to another tenant." },
  user_not_in_tenant: { text: "The account is not a member of that tenant." },
  user_disabled: { text: "The connected account is disabled.", fix: "Connect another account." },
  account_mismatch: {
    text: "Someone other than you signed in to Microsoft 365, so nothing was stored.",
    fix: "Connect again and sign in with your own account.",
  },
  consent_unverifiable: { text: "The consent could not be verified, so nothing was stored.", fix: "Connect again." },
  code_already_redeemed: { text: "The sign-in was already used.", fix: "Connect again." },
  redirect_uri_mismatch: { text: "The app registration lacks BookingBridge's redirect address.", fix: "The operator must add it." },
  pkce_mismatch: { text: "The sign-in could not be verified.", fix: "Connect again." },
  login_required: { text: "Microsoft 365 asks the account to sign in.", fix: "Reconnect." },
  invalid_scope: { text: "Microsoft 365 refused the requested permissions." },
  refresh_token_missing: { text: "No stored sign-in was found.", fix: "Reconnect." },
  no_refresh_token: { text: "No stored sign-in was found.", fix: "Reconnect." },
  // people
  unknown_company: { text: "No company with that id exists in this building.", fix: "Add the company first." },
  unknown_user: { text: "That address is not a registered user of this building.", fix: "Register the user first." },
  company_in_use: { text: "Registered users still belong to this company.", fix: "Move or remove them first." },
  user_is_default: { text: "This user is the building's default user.", fix: "Choose another default user in Settings first." },
  rows_rejected: { text: "Some rows were rejected, so nothing was imported.", fix: "Fix the rows below and import again." },
  // bookings
  slot_taken: { text: "That time is already booked." },
  concurrent_update: { text: "Someone changed this at the same time.", fix: "Reload and try again." },
};

export function reasonText(code: string | null | undefined): ReasonText | null {
  if (!code) return null;
  return REASONS[code] ?? { text: code.replace(/_/g, " ") };
}

/** "text Fix." in one sentence pair, for places with room for one line. */
export function reasonSentence(code: string | null | undefined): string {
  const r = reasonText(code);
  if (!r) return "";
  return r.fix ? `${r.text} ${r.fix}` : r.text;
}
