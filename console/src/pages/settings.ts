// Settings: the default user, privacy (whether subjects of Outlook bookings are stored), no-show
// release (check-in window, grace period, recurring strikes) and the ad hoc threshold of analytics.

import { ApiError, seg } from "../api";
import type { PageContext } from "../app";
import { field, h, replace, setFieldError } from "../dom";
import { fieldErrors } from "../problem";
import type { AutoReleaseSettings, BuildingSettings, User } from "../types";
import { messageSlot, pageHeading } from "../ui";

export async function renderSettings(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}`;
  const [settings, users] = await Promise.all([
    ctx.api.get<BuildingSettings>(`${base}/settings`, { signal: ctx.signal }),
    ctx.api.page<User>(`${base}/users`, { query: { top: 500 }, signal: ctx.signal }),
  ]);
  const current = settings.defaultUserEmail ?? "";
  const options = users.value.map((u) => h("option", { value: u.email, selected: u.email.toLowerCase() === current.toLowerCase() }, `${u.name} (${u.email})`));
  if (current && !users.value.some((u) => u.email.toLowerCase() === current.toLowerCase())) {
    options.push(h("option", { value: current, selected: true }, current));
  }
  const defaultUser = field(
    "Default user",
    h("select", { name: "defaultUserEmail" }, h("option", { value: "" }, "None"), ...options),
    "Outlook bookings by someone whose email domain matches several companies are attributed to this registered user.",
  );
  const subjects = h("input", { type: "checkbox", id: "store-subjects", name: "storeExternalSubjects", checked: settings.storeExternalSubjects });
  const subjectsError = h("p", { class: "field-error", id: "store-subjects-error", hidden: true });
  subjects.setAttribute("aria-describedby", "store-subjects-hint store-subjects-error");
  const release: AutoReleaseSettings = settings.autoRelease ?? { enabled: false, graceMinutes: 10, earlyMinutes: 15, recurringStrikes: null };
  const releaseOn = h("input", { type: "checkbox", id: "auto-release", name: "autoRelease.enabled", checked: release.enabled });
  releaseOn.setAttribute("aria-describedby", "auto-release-hint");
  const number = (name: string, value: number | null, min: number, max: number) =>
    h("input", { type: "number", name, min: String(min), max: String(max), step: "1", inputmode: "numeric", value: value === null ? "" : String(value) });
  const grace = field("Grace period (minutes)", number("autoRelease.graceMinutes", release.graceMinutes, 1, 240), "Released this long after the start without a check-in (1 to 240; default 10).");
  const early = field("Check-in opens (minutes before the start)", number("autoRelease.earlyMinutes", release.earlyMinutes, 0, 120), "0 to 120; default 15.");
  const strikes = field("End a recurring series after", number("autoRelease.recurringStrikes", release.recurringStrikes, 1, 52), "This many released occurrences in a row decline the rest of the series (1 to 52). Empty: never.");
  const adHoc = field("Ad hoc threshold (minutes)", number("adHocMinutes", settings.adHocMinutes ?? 15, 0, 1440), "Analytics counts a booking made less than this long before its start, or after it started, as ad hoc (default 15).");
  const numbers: Record<string, { control: HTMLInputElement; error: HTMLElement }> = {
    "autoRelease.graceMinutes": grace,
    "autoRelease.earlyMinutes": early,
    "autoRelease.recurringStrikes": strikes,
    adHocMinutes: adHoc,
  };
  const msg = messageSlot();
  const submit = h("button", { type: "submit" }, "Save settings");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "settings-form-title", novalidate: true },
    h("h2", { id: "settings-form-title" }, "Attribution and privacy"),
    defaultUser.wrap,
    h(
      "fieldset",
      null,
      h("legend", null, "Privacy"),
      h("div", { class: "choice" }, subjects, h("label", { for: "store-subjects" }, "Store the subjects of bookings made directly in Outlook")),
      h(
        "p",
        { class: "hint", id: "store-subjects-hint" },
        "Off (the default): BookingBridge keeps only the time, the resource and who booked; meeting titles typed in Outlook are never stored.",
      ),
      subjectsError,
    ),
    h(
      "fieldset",
      null,
      h("legend", null, "No-show release"),
      h("div", { class: "choice" }, releaseOn, h("label", { for: "auto-release" }, "Release rooms nobody checked in to")),
      h(
        "p",
        { class: "hint", id: "auto-release-hint" },
        "A platform booking is cancelled; an Outlook booking of a room mailbox connected in application mode is declined as the room. Elsewhere it is counted as a no-show and left alone. A resource's own setting overrides this one.",
      ),
      h("div", { class: "form-grid" }, grace.wrap, early.wrap, strikes.wrap),
    ),
    h("fieldset", null, h("legend", null, "Analytics"), adHoc.wrap),
    h("div", { class: "actions" }, submit),
    msg.el,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setFieldError(defaultUser, null);
    for (const f of Object.values(numbers)) setFieldError(f, null);
    subjectsError.hidden = true;
    submit.disabled = true;
    // An empty box is the default (strikes: never); the server checks the ranges and names each bad one.
    const read = (f: { control: HTMLInputElement }) => (f.control.value.trim() === "" ? null : Number(f.control.value));
    const body: BuildingSettings = {
      ...settings,
      defaultUserEmail: defaultUser.control.value || null,
      storeExternalSubjects: subjects.checked,
      autoRelease: { enabled: releaseOn.checked, graceMinutes: read(grace) ?? 10, earlyMinutes: read(early) ?? 15, recurringStrikes: read(strikes) },
      adHocMinutes: read(adHoc) ?? 15,
    };
    ctx.api
      .put<BuildingSettings>(`${base}/settings`, body)
      .then((saved) => {
        Object.assign(settings, saved);
        msg.set("Settings saved.", "success");
        ctx.announce("Settings saved.");
      })
      .catch((err: unknown) => {
        if (err instanceof ApiError) {
          const errors = fieldErrors(err.problem);
          const d = errors.get("defaultUserEmail") ?? (err.problem.reason === "unknown_user" ? "Not a registered user of this building." : null);
          if (d) setFieldError(defaultUser, d);
          for (const [name, f] of Object.entries(numbers)) {
            const m = errors.get(name);
            if (m) setFieldError(f, m);
          }
          const s = errors.get("storeExternalSubjects");
          if (s) {
            subjectsError.hidden = false;
            subjectsError.textContent = s;
          }
        }
        msg.set(ctx.handle(err));
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  replace(page, pageHeading("Settings", ctx.zone), form);
}
