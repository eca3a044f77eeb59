// Shared page parts: headings, alerts, badges, confirmation dialogs, busy buttons.

import { ApiError, NetworkError, SignInRequired } from "./api";
import type { Badge } from "./badges";
import { h, uid } from "./dom";
import { describeProblem } from "./problem";
import { zoneLabel } from "./time";

/** The page's h1 (every page has one, named after the page) and the zone its times are in. */
export function pageHeading(title: string, zone?: string): HTMLElement {
  return h(
    "div",
    { class: "page-heading" },
    h("h1", { tabindex: "-1" }, title),
    zone ? h("p", { class: "zone", "data-zone": zone }, "Times in ", h("strong", null, zoneLabel(zone))) : null,
  );
}

/** Words for any error a call can end with; never a stack trace. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return describeProblem(err.problem);
  if (err instanceof NetworkError || err instanceof SignInRequired) return err.message;
  return "Something went wrong in the console. Reload the page to try again.";
}

export function alertBox(message: string, kind: "error" | "success" | "info" | "warning" = "error"): HTMLElement {
  return h("div", { class: `alert alert-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
}

/** An inline message slot next to a control or row: set(text) shows it, set(null) clears it. */
export function messageSlot(): { el: HTMLElement; set: (text: string | null, kind?: "error" | "success" | "info") => void } {
  const el = h("p", { class: "msg", "aria-live": "polite" });
  return {
    el,
    set(text, kind = "error") {
      el.textContent = text ?? "";
      el.className = text ? `msg msg-${kind}` : "msg";
    },
  };
}

export function badgeEl(badge: Badge): HTMLElement {
  return h("span", { class: `badge badge-${badge.state}`, "data-state": badge.state }, badge.label);
}

export function button(
  label: string,
  onClick: (ev: MouseEvent) => void | Promise<void>,
  attrs: Record<string, string | boolean | undefined> = {},
): HTMLButtonElement {
  const b = h("button", { type: "button", ...attrs }, label);
  b.addEventListener("click", (ev) => {
    void runBusy(b, () => onClick(ev));
  });
  return b;
}

/** Disable a button (aria-busy) while its work runs. */
export async function runBusy(b: HTMLButtonElement, work: () => void | Promise<void>): Promise<void> {
  if (b.disabled) return;
  b.disabled = true;
  b.setAttribute("aria-busy", "true");
  try {
    await work();
  } finally {
    b.disabled = false;
    b.removeAttribute("aria-busy");
  }
}

/** A modal confirmation that says what will happen; resolves true when confirmed. */
export function confirmDialog(title: string, body: (string | Node)[], confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const titleId = uid("dlg");
    const descId = uid("dlg");
    const previous = document.activeElement as HTMLElement | null;
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId, "aria-describedby": descId });
    const done = (value: boolean) => {
      if (dialog.open) dialog.close();
      dialog.remove();
      previous?.focus();
      resolve(value);
    };
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    cancel.addEventListener("click", () => done(false));
    const ok = h("button", { type: "button", class: "danger" }, confirmLabel);
    ok.addEventListener("click", () => done(true));
    dialog.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(false);
    });
    dialog.append(
      h("h2", { id: titleId }, title),
      h("div", { id: descId }, ...body.map((b) => (typeof b === "string" ? h("p", null, b) : b))),
      h("div", { class: "actions" }, cancel, ok),
    );
    document.body.append(dialog);
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
    cancel.focus();
  });
}

/** A definition list of label → value pairs. */
export function facts(rows: [string, Node | string | null | undefined][]): HTMLElement {
  return h(
    "dl",
    { class: "facts" },
    ...rows.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v ?? "—")]),
  );
}

/**
 * A table that stacks into one card per row on narrow screens (390 px): each cell gets its
 * column's name as data-label (shown by CSS before the value). Call again after adding rows.
 */
export function stackable<T extends HTMLTableElement>(table: T): T {
  table.classList.add("stack");
  const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent ?? "");
  for (const tr of table.querySelectorAll("tbody tr")) {
    [...tr.children].forEach((cell, i) => {
      const name = names[i];
      if (name && cell.tagName === "TD") cell.setAttribute("data-label", name);
    });
  }
  return table;
}
