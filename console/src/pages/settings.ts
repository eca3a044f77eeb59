// Settings: the default user and privacy (whether subjects of Outlook bookings are stored).

import { ApiError, seg } from "../api";
import type { PageContext } from "../app";
import { field, h, replace, setFieldError } from "../dom";
import { fieldErrors } from "../problem";
import type { BuildingSettings, User } from "../types";
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
  const msg = messageSlot();
  const submit = h("button", { type: "submit" }, "Save settings");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "settings-form-title" },
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
    h("div", { class: "actions" }, submit),
    msg.el,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setFieldError(defaultUser, null);
    subjectsError.hidden = true;
    submit.disabled = true;
    const body: BuildingSettings = { ...settings, defaultUserEmail: defaultUser.control.value || null, storeExternalSubjects: subjects.checked };
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
