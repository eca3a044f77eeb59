// A tiny DOM builder: the console is plain TypeScript and the DOM (no framework, small bundle).

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** Build an element: attributes (`on*` are listeners, `true` sets a boolean attribute), children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "style") {
      // Through the CSSOM: the console's Content-Security-Policy (style-src 'self') blocks
      // style attributes, not CSSOM changes.
      for (const decl of (typeof value === "string" ? value : "").split(";")) {
        const i = decl.indexOf(":");
        if (i > 0) el.style.setProperty(decl.slice(0, i).trim(), decl.slice(i + 1).trim());
      }
    } else if (key === "value" && "value" in el) {
      (el as HTMLInputElement).value = String(value);
    } else if (key === "checked" && el instanceof HTMLInputElement) {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

let counter = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix = "bb"): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form field: the label, the control, and a place for its error (aria-describedby). */
export function field<T extends HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>(
  label: string,
  control: T,
  hint?: string,
): { wrap: HTMLElement; control: T; error: HTMLElement } {
  const id = control.id || uid("f");
  control.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  control.setAttribute("aria-describedby", [hintEl ? `${id}-hint` : "", `${id}-error`].join(" ").trim());
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl, error);
  return { wrap, control, error };
}

/** Show (or clear, with null) a field's error next to it. */
export function setFieldError(
  f: { control: HTMLElement; error: HTMLElement },
  message: string | null,
): void {
  f.error.hidden = message === null;
  f.error.textContent = message ?? "";
  if (message === null) f.control.removeAttribute("aria-invalid");
  else f.control.setAttribute("aria-invalid", "true");
}
