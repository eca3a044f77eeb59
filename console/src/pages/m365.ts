// The Microsoft 365 tile: connect (delegated, or application consent for a tenant), the connected
// account, tenant, scopes and status; Reconnect when reauth_required; Disconnect behind a confirm.

import { seg } from "../api";
import type { PageContext } from "../app";
import { field, h, replace, setFieldError, uid } from "../dom";
import { fieldErrors } from "../problem";
import { ApiError } from "../api";
import { reasonText } from "../reasons";
import { buildingHref } from "../router";
import { formatDateTime } from "../time";
import type { Connection } from "../types";
import { alertBox, button, confirmDialog, facts, messageSlot, pageHeading } from "../ui";

const STATUS_WORDS: Record<Connection["status"], string> = {
  connected: "Connected",
  reauth_required: "Reconnect needed",
  disconnected: "Not connected",
  error: "Error",
};

/** The console page the connect flow returns to (the callback adds ?status=…&reason=…). */
export function returnUrl(building: string, loc: Location = location): string {
  return `${loc.origin}${loc.pathname}#/b/${encodeURIComponent(building)}/m365`;
}

/** The ?status=&reason= the OAuth callback put on the return URL, once; then removed. */
export function takeConnectOutcome(loc: Location = location, hist: History = history): { status: string; reason: string | null } | null {
  const q = new URLSearchParams(loc.search);
  const status = q.get("status");
  if (!status) return null;
  const reason = q.get("reason");
  q.delete("status");
  q.delete("reason");
  const search = q.toString();
  hist.replaceState(hist.state, "", `${loc.pathname}${search ? `?${search}` : ""}${loc.hash}`);
  return { status, reason };
}

export async function renderM365(ctx: PageContext, page: HTMLElement): Promise<void> {
  const outcome = takeConnectOutcome();
  const connection = await ctx.api.get<Connection>(`/buildings/${seg(ctx.building)}/connection`, { signal: ctx.signal });
  const parts: Node[] = [pageHeading("Microsoft 365", ctx.zone)];
  if (outcome?.status === "connected") parts.push(alertBox("Connected to Microsoft 365.", "success"));
  else if (outcome) {
    const r = reasonText(outcome.reason);
    parts.push(alertBox(`Connecting did not finish: ${r ? [r.text, r.fix].filter(Boolean).join(" ") : "unknown reason."}`, "error"));
  }
  parts.push(tile(ctx, connection));
  replace(page, ...parts);
}

function tile(ctx: PageContext, c: Connection): HTMLElement {
  const section = h("section", { class: "card tile", "aria-labelledby": "m365-tile", "data-connection": c.status });
  const status = h("span", { class: `badge conn-${c.status}`, "data-connection-status": c.status }, STATUS_WORDS[c.status] ?? c.status);
  section.append(h("h2", { id: "m365-tile" }, "Connection ", status));
  if (c.status === "disconnected") {
    section.append(
      h("p", null, "Connect this building to a Microsoft 365 tenant so its resources can be mapped to Outlook calendars."),
      connectForm(ctx, null),
    );
    return section;
  }
  const account = c.account
    ? [c.account.displayName, c.account.userPrincipalName ?? c.account.mail].filter(Boolean).join(" · ")
    : c.mode === "application"
      ? "The BookingBridge application (no user account)"
      : null;
  section.append(
    facts([
      ["Mode", c.mode === "application" ? "Application (tenant-wide consent)" : c.mode === "delegated" ? "Delegated (a signed-in account)" : null],
      ["Account", account],
      ["Tenant", c.tenantId],
      ["Scopes", c.scopes.length ? h("ul", { class: "scopes" }, ...c.scopes.map((s) => h("li", null, h("code", null, s)))) : "none"],
      ["Connected", `${formatDateTime(c.connectedAt, ctx.zone)}`],
      ["Last token refresh", `${formatDateTime(c.lastRefreshAt, ctx.zone)}`],
    ]),
  );
  if (c.status === "connected") {
    section.append(
      h(
        "p",
        { class: "card-links" },
        h("a", { href: buildingHref(ctx.building, "checks"), "data-go-live": "" }, "Run the go-live check"),
        ": prove bookings flow both ways between BookingBridge and Outlook before going live.",
      ),
    );
  }
  if (c.status === "reauth_required" || c.status === "error") {
    const r = reasonText(c.reason);
    section.append(
      h(
        "div",
        { class: "alert alert-warning", role: "status", "data-reason": c.reason ?? "" },
        h("strong", null, c.status === "reauth_required" ? "Microsoft 365 needs a new sign-in. " : "The connection has a problem. "),
        r ? [r.text, r.fix].filter(Boolean).join(" ") : "No reason was given.",
      ),
    );
    const msg = messageSlot();
    section.append(
      h(
        "div",
        { class: "actions" },
        button("Reconnect", () => startConnect(ctx, c.mode ?? "delegated", c.mode === "application" ? (c.tenantId ?? "") : "", msg.set)),
      ),
      msg.el,
    );
  }
  section.append(disconnectPart(ctx));
  return section;
}

function connectForm(ctx: PageContext, _current: Connection | null): HTMLElement {
  const name = uid("mode");
  const delegated = h("input", { type: "radio", name, value: "delegated", id: `${name}-d`, checked: true });
  const application = h("input", { type: "radio", name, value: "application", id: `${name}-a` });
  const tenant = field(
    "Tenant id or domain",
    h("input", { type: "text", name: "tenant", autocomplete: "off", spellcheck: "false", placeholder: "contoso.onmicrosoft.com" }),
    "The Microsoft 365 tenant whose administrator grants consent.",
  );
  const rbac = h(
    "div",
    { class: "rbac" },
    h("h3", null, "Limit the application to the rooms it needs (Exchange RBAC)"),
    h(
      "p",
      null,
      "Application consent lets BookingBridge reach every mailbox in the tenant. Your Exchange administrator limits it to the chosen rooms with RBAC for Applications:",
    ),
    h(
      "ol",
      null,
      h("li", null, "Put the rooms BookingBridge may use in a mail-enabled security group (direct members only)."),
      h("li", null, "Create the Exchange service principal: ", h("code", null, `New-ServicePrincipal -AppId ${ctx.config.clientId} -ObjectId <enterprise app object id>`), "."),
      h("li", null, "Create a management scope for the group: ", h("code", null, "New-ManagementScope -RecipientRestrictionFilter \"MemberOfGroup -eq '<group DN>'\""), "."),
      h(
        "li",
        null,
        "Assign the roles ",
        h("code", null, "Application Calendars.Read"),
        " and ",
        h("code", null, "Application Calendars.ReadWrite"),
        " limited to that scope (",
        h("code", null, "New-ManagementRoleAssignment -App … -CustomResourceScope …"),
        ").",
      ),
      h(
        "li",
        null,
        "Remove the tenant-wide Calendars.Read and Calendars.ReadWrite grants from the enterprise application: grants add up, so while they stay the scope restricts nothing.",
      ),
      h("li", null, "Check with ", h("code", null, "Test-ServicePrincipalAuthorization"), "; Exchange takes up to two hours to apply changes."),
    ),
    h("p", null, "The repository's infra/scripts/scope-rooms.ps1 does steps 2 to 4 and the check."),
  );
  const tenantPart = h("div", { class: "tenant-part", hidden: true }, tenant.wrap, rbac);
  const sync = () => {
    tenantPart.hidden = !application.checked;
  };
  delegated.addEventListener("change", sync);
  application.addEventListener("change", sync);
  const msg = messageSlot();
  const submit = h("button", { type: "submit" }, "Connect");
  const form = h(
    "form",
    { class: "connect-form", "aria-label": "Connect to Microsoft 365" },
    h(
      "fieldset",
      null,
      h("legend", null, "How to connect"),
      h(
        "div",
        { class: "choice" },
        delegated,
        h("label", { for: delegated.id }, h("strong", null, "Delegated"), ": sign in with your own Microsoft 365 account; BookingBridge uses the calendars and rooms that account can reach."),
      ),
      h(
        "div",
        { class: "choice" },
        application,
        h("label", { for: application.id }, h("strong", null, "Application"), ": a tenant administrator consents for the whole tenant; no personal account is involved."),
      ),
    ),
    tenantPart,
    h("div", { class: "actions" }, submit),
    msg.el,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setFieldError(tenant, null);
    const mode = application.checked ? "application" : "delegated";
    const t = tenant.control.value.trim();
    if (mode === "application" && !t) {
      setFieldError(tenant, "Enter the tenant id or a verified domain of the tenant.");
      tenant.control.focus();
      return;
    }
    submit.disabled = true;
    void startConnect(ctx, mode, t, msg.set, (field, message) => {
      if (field === "tenant") setFieldError(tenant, message);
    }).finally(() => {
      submit.disabled = false;
    });
  });
  return form;
}

async function startConnect(
  ctx: PageContext,
  mode: "delegated" | "application",
  tenant: string,
  say: (text: string | null, kind?: "error" | "success" | "info") => void,
  onField?: (field: string, message: string) => void,
): Promise<void> {
  say("Starting the sign-in with Microsoft…", "info");
  try {
    const body: Record<string, string> = { mode, returnUrl: returnUrl(ctx.building) };
    if (mode === "application") body["tenant"] = tenant;
    const started = await ctx.api.post<{ authorizeUrl: string }>(`/buildings/${seg(ctx.building)}/connection`, body);
    location.assign(started.authorizeUrl);
  } catch (err) {
    if (err instanceof ApiError && onField) for (const [f, m] of fieldErrors(err.problem)) onField(f, m);
    say(ctx.handle(err, () => startConnect(ctx, mode, tenant, say, onField)));
  }
}

function disconnectPart(ctx: PageContext): HTMLElement {
  const msg = messageSlot();
  const disconnect = button(
    "Disconnect",
    async () => {
      const ok = await confirmDialog(
        "Disconnect from Microsoft 365?",
        [
          "BookingBridge stops syncing this building with Outlook: its change-notification subscriptions and the stored sign-in are deleted.",
          "Resource mappings are kept but show Not synced until you connect again. Bookings already in Outlook stay there.",
        ],
        "Disconnect",
      );
      if (!ok) return;
      try {
        await ctx.api.delete(`/buildings/${seg(ctx.building)}/connection`);
        ctx.app.forgetResources(ctx.building);
        ctx.announce("Disconnected from Microsoft 365.");
        ctx.app.navigate(location.hash);
      } catch (err) {
        msg.set(ctx.handle(err));
      }
    },
    { class: "danger" },
  );
  return h("div", { class: "actions" }, disconnect, msg.el);
}
