// Companies and users: add, edit, delete; CSV import with the rejected rows shown; the default user.

import { ApiError, seg, type ListPage } from "../api";
import type { PageContext } from "../app";
import { previewImport, type ImportPreview } from "../csv";
import { field, h, replace, setFieldError } from "../dom";
import { fieldErrors } from "../problem";
import type { BuildingSettings, Company, ImportReport, User } from "../types";
import { alertBox, button, confirmDialog, messageSlot, pageHeading, stackable } from "../ui";

type Field = { control: HTMLElement; error: HTMLElement };

export async function renderPeople(ctx: PageContext, page: HTMLElement): Promise<void> {
  const base = `/buildings/${seg(ctx.building)}`;
  const [companies, firstPage, settings] = await Promise.all([
    ctx.api.all<Company>(`${base}/companies`, { signal: ctx.signal }),
    ctx.api.page<User>(`${base}/users`, { query: { top: 100 }, signal: ctx.signal }),
    ctx.api.get<BuildingSettings>(`${base}/settings`, { signal: ctx.signal }),
  ]);
  const reload = () => ctx.app.navigate(location.hash);
  replace(
    page,
    pageHeading("Companies and users", ctx.zone),
    h(
      "p",
      null,
      "Outlook bookings are attributed to the registered user who made them, else to the company whose email domain matches, else to the default user.",
    ),
    companiesSection(ctx, base, companies, reload),
    usersSection(ctx, base, companies, firstPage, settings, reload),
    importSection(ctx, base, companies, reload),
  );
}

function applyFieldErrors(err: unknown, fields: Record<string, Field>): void {
  if (!(err instanceof ApiError)) return;
  for (const [f, m] of fieldErrors(err.problem)) {
    const target = fields[f];
    if (target) setFieldError(target, m);
  }
}

function companiesSection(ctx: PageContext, base: string, companies: Company[], reload: () => void): HTMLElement {
  const heading = h("h2", { id: "companies-title", tabindex: "-1" }, "Companies");
  const id = field("Company id", h("input", { type: "text", name: "companyId", required: true, autocomplete: "off" }), "Letters, digits, . _ - (at most 64).");
  const name = field("Company name", h("input", { type: "text", name: "companyName", required: true, maxlength: "200" }));
  const domains = field("Email domains", h("input", { type: "text", name: "domains", required: true, autocomplete: "off", placeholder: "contoso.com, fabrikam.com" }), "Comma-separated; a subdomain is a different domain.");
  const fields: Record<string, Field> = { company: id, id, name, domains };
  const msg = messageSlot();
  const submit = h("button", { type: "submit" }, "Add company");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel editing");
  const form = h("form", { "aria-labelledby": "companies-title", novalidate: true }, h("div", { class: "form-grid" }, id.wrap, name.wrap, domains.wrap), h("div", { class: "actions" }, submit, cancel), msg.el);
  const resetForm = () => {
    form.reset();
    id.control.readOnly = false;
    submit.textContent = "Add company";
    cancel.hidden = true;
  };
  cancel.addEventListener("click", resetForm);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    Object.values(fields).forEach((f) => setFieldError(f, null));
    const cid = id.control.value.trim();
    const list = domains.control.value.split(/[\s,;]+/).map((d) => d.trim()).filter(Boolean);
    let bad = false;
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(cid)) {
      setFieldError(id, "Use 1 to 64 letters, digits, dots, underscores or dashes.");
      bad = true;
    }
    if (!name.control.value.trim()) {
      setFieldError(name, "Enter a name.");
      bad = true;
    }
    if (!list.length) {
      setFieldError(domains, "Enter at least one domain.");
      bad = true;
    }
    if (bad) return;
    submit.disabled = true;
    ctx.api
      .put<Company>(`${base}/companies/${seg(cid)}`, { name: name.control.value.trim(), domains: list })
      .then(() => {
        ctx.announce(`Company ${cid} saved.`);
        reload();
      })
      .catch((err: unknown) => {
        applyFieldErrors(err, fields);
        msg.set(ctx.handle(err));
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  const rows = companies.map((c) => {
    const result = messageSlot();
    return h(
      "tr",
      { "data-company-id": c.id },
      h("th", { scope: "row" }, c.name, h("p", { class: "hint" }, `id ${c.id}`)),
      h("td", null, c.domains.join(", ")),
      h(
        "td",
        { class: "row-actions" },
        button("Edit", () => {
          id.control.value = c.id;
          id.control.readOnly = true;
          name.control.value = c.name;
          domains.control.value = c.domains.join(", ");
          submit.textContent = "Save company";
          cancel.hidden = false;
          name.control.focus();
        }, { class: "secondary", "aria-label": `Edit company ${c.name}` }),
        button("Delete", async () => {
          const ok = await confirmDialog(`Delete company ${c.name}?`, ["Outlook bookings from its domains are no longer attributed to it. A company with registered users cannot be deleted."], "Delete");
          if (!ok) return;
          try {
            await ctx.api.delete(`${base}/companies/${seg(c.id)}`);
            ctx.announce(`Company ${c.name} deleted.`);
            reload();
          } catch (err) {
            result.set(ctx.handle(err));
          }
        }, { class: "secondary", "aria-label": `Delete company ${c.name}` }),
        result.el,
      ),
    );
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "companies-title" },
    heading,
    companies.length
      ? h("div", { class: "table-wrap" }, stackable(h("table", null, h("thead", null, h("tr", null, h("th", { scope: "col" }, "Company"), h("th", { scope: "col" }, "Domains"), h("th", { scope: "col" }, "Actions"))), h("tbody", null, ...rows))))
      : h("p", null, "No companies yet."),
    h("h3", null, "Add or edit a company"),
    form,
  );
}

function companySelect(companies: Company[], attrs: Record<string, string | boolean> = {}): HTMLSelectElement {
  return h("select", attrs, h("option", { value: "" }, "Choose a company"), ...companies.map((c) => h("option", { value: c.id }, `${c.name} (${c.id})`)));
}

function usersSection(
  ctx: PageContext,
  base: string,
  companies: Company[],
  first: ListPage<User>,
  settings: BuildingSettings,
  reload: () => void,
): HTMLElement {
  const heading = h("h2", { id: "users-title", tabindex: "-1" }, "Users");
  const email = field("Email address", h("input", { type: "email", name: "email", required: true, autocomplete: "off" }));
  const name = field("Name", h("input", { type: "text", name: "userName", required: true, maxlength: "200" }));
  const company = field("Company", companySelect(companies, { name: "userCompany", required: true }));
  const fields: Record<string, Field> = { email, name, companyId: company };
  const msg = messageSlot();
  const submit = h("button", { type: "submit" }, "Add user");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel editing");
  const form = h("form", { "aria-labelledby": "users-form-title", novalidate: true }, h("div", { class: "form-grid" }, email.wrap, name.wrap, company.wrap), h("div", { class: "actions" }, submit, cancel), msg.el);
  const resetForm = () => {
    form.reset();
    email.control.readOnly = false;
    submit.textContent = "Add user";
    cancel.hidden = true;
  };
  cancel.addEventListener("click", resetForm);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    Object.values(fields).forEach((f) => setFieldError(f, null));
    const address = email.control.value.trim();
    let bad = false;
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(address)) {
      setFieldError(email, "Enter an email address.");
      bad = true;
    }
    if (!name.control.value.trim()) {
      setFieldError(name, "Enter a name.");
      bad = true;
    }
    if (!company.control.value) {
      setFieldError(company, companies.length ? "Choose a company." : "Add a company first.");
      bad = true;
    }
    if (bad) return;
    submit.disabled = true;
    ctx.api
      .put<User>(`${base}/users/${seg(address)}`, { name: name.control.value.trim(), companyId: company.control.value })
      .then(() => {
        ctx.announce(`User ${address} saved.`);
        reload();
      })
      .catch((err: unknown) => {
        applyFieldErrors(err, fields);
        if (err instanceof ApiError && err.problem.reason === "unknown_company") setFieldError(company, "No such company in this building.");
        msg.set(ctx.handle(err));
      })
      .finally(() => {
        submit.disabled = false;
      });
  });

  const defaultEmail = settings.defaultUserEmail?.toLowerCase() ?? null;
  const companyName = new Map(companies.map((c) => [c.id, c.name]));
  const tbody = h("tbody");
  const usersTable = h("table", null, h("thead", null, h("tr", null, h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Company"), h("th", { scope: "col" }, "Default"), h("th", { scope: "col" }, "Actions"))), tbody);
  const addRows = (users: User[]) => {
    for (const u of users) {
      const result = messageSlot();
      const isDefault = u.email.toLowerCase() === defaultEmail;
      tbody.append(
        h(
          "tr",
          { "data-user-email": u.email },
          h("th", { scope: "row" }, u.name, h("p", { class: "hint" }, u.email)),
          h("td", null, companyName.get(u.companyId) ?? u.companyId),
          h("td", null, isDefault ? h("span", { class: "badge badge-synced", "data-default-user": "" }, "Default user") : ""),
          h(
            "td",
            { class: "row-actions" },
            button("Edit", () => {
              email.control.value = u.email;
              email.control.readOnly = true;
              name.control.value = u.name;
              company.control.value = u.companyId;
              submit.textContent = "Save user";
              cancel.hidden = false;
              name.control.focus();
            }, { class: "secondary", "aria-label": `Edit user ${u.email}` }),
            isDefault
              ? null
              : button("Make default", async () => {
                  try {
                    await ctx.api.put<BuildingSettings>(`${base}/settings`, { ...settings, defaultUserEmail: u.email });
                    ctx.announce(`${u.email} is now the default user.`);
                    reload();
                  } catch (err) {
                    result.set(ctx.handle(err));
                  }
                }, { class: "secondary", "aria-label": `Make ${u.email} the default user` }),
            button("Delete", async () => {
              const ok = await confirmDialog(`Remove user ${u.email}?`, ["Their Outlook bookings are then attributed by their email domain instead. The default user cannot be removed."], "Remove");
              if (!ok) return;
              try {
                await ctx.api.delete(`${base}/users/${seg(u.email)}`);
                ctx.announce(`User ${u.email} removed.`);
                reload();
              } catch (err) {
                result.set(ctx.handle(err));
              }
            }, { class: "secondary", "aria-label": `Delete user ${u.email}` }),
            result.el,
          ),
        ),
      );
    }
    stackable(usersTable);
  };
  addRows(first.value);
  let last = first;
  const more = button("Load more users", async () => {
    const next = ctx.api.next(`${base}/users`, last, { query: { top: 100 } });
    if (!next) return;
    try {
      last = await next;
      addRows(last.value);
      more.hidden = !last.nextLink;
    } catch (err) {
      moreMsg.set(ctx.handle(err));
    }
  }, { class: "secondary" });
  const moreMsg = messageSlot();
  more.hidden = !last.nextLink;
  return h(
    "section",
    { class: "card", "aria-labelledby": "users-title" },
    heading,
    h(
      "p",
      null,
      "Default user: ",
      h("strong", null, settings.defaultUserEmail ?? "none"),
      ". Bookers whose domain matches several companies are attributed to the default user.",
    ),
    first.value.length
      ? h("div", { class: "table-wrap" }, usersTable)
      : h("p", null, "No registered users yet."),
    h("div", { class: "actions" }, more, moreMsg.el),
    h("h3", { id: "users-form-title" }, "Add or edit a user"),
    form,
  );
}

function importSection(ctx: PageContext, base: string, companies: Company[], reload: () => void): HTMLElement {
  const file = field("CSV file", h("input", { type: "file", name: "csvFile", accept: ".csv,text/csv" }), "Columns email, name, companyId (any order); one user per row.");
  const text = field("Or paste CSV", h("textarea", { name: "csvText", rows: 6, spellcheck: "false", placeholder: "email,name,companyId\nann@contoso.com,Ann,contoso" }));
  const previewArea = h("div", { class: "preview", "aria-live": "polite" });
  const msg = messageSlot();
  const importButton = h("button", { type: "submit", disabled: true }, "Import users");
  let preview: ImportPreview | null = null;
  const update = () => {
    const value = text.control.value;
    if (!value.trim()) {
      preview = null;
      replace(previewArea);
      importButton.disabled = true;
      return;
    }
    preview = previewImport(value, companies.map((c) => c.id));
    importButton.disabled = preview.headerProblem !== null || !preview.rows.length;
    replace(previewArea, previewTable(preview, null));
  };
  file.control.addEventListener("change", () => {
    const f = (file.control).files?.[0];
    if (!f) return;
    f.text()
      .then((t) => {
        text.control.value = t;
        update();
      })
      .catch(() => msg.set("The file could not be read."));
  });
  text.control.addEventListener("input", update);
  const form = h("form", { "aria-labelledby": "import-title" }, file.wrap, text.wrap, previewArea, h("div", { class: "actions" }, importButton), msg.el);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!preview) return;
    const sent = preview;
    importButton.disabled = true;
    msg.set("Importing…", "info");
    ctx.api
      .request<ImportReport>("POST", `${base}/users:import`, { raw: { body: text.control.value, contentType: "text/csv" } })
      .then((report) => {
        msg.set(`Imported ${report.imported} user${report.imported === 1 ? "" : "s"}.`, "success");
        ctx.announce(`Imported ${report.imported} users.`);
        window.setTimeout(reload, 1500);
      })
      .catch((err: unknown) => {
        if (err instanceof ApiError && Array.isArray(err.problem.extra["rejected"])) {
          const rejected = err.problem.extra["rejected"] as ImportReport["rejected"];
          replace(previewArea, previewTable(sent, rejected));
          msg.set(`Nothing was imported: ${rejected.length} row${rejected.length === 1 ? " was" : "s were"} rejected. Fix ${rejected.length === 1 ? "it" : "them"} and import again.`);
        } else {
          msg.set(ctx.handle(err));
        }
      })
      .finally(() => {
        importButton.disabled = false;
      });
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "import-title" },
    h("h2", { id: "import-title" }, "Import users from CSV"),
    h("p", null, "All or nothing: if any row is rejected, no user is imported."),
    form,
  );
}

function previewTable(p: ImportPreview, rejected: ImportReport["rejected"] | null): HTMLElement {
  const byRow = new Map<number, string[]>();
  for (const r of rejected ?? []) byRow.set(r.row, [...(byRow.get(r.row) ?? []), r.error]);
  const shown = rejected ? p.rows.filter((r) => byRow.has(r.row)) : p.rows.slice(0, 50);
  const caption = rejected
    ? `Rejected rows (${rejected.length})`
    : `Preview: ${p.rows.length} row${p.rows.length === 1 ? "" : "s"}${p.problemCount ? `, ${p.problemCount} with problems` : ""}${p.rows.length > 50 ? " (first 50 shown)" : ""}`;
  return h(
    "div",
    { class: "table-wrap", "data-import": rejected ? "rejected" : "preview" },
    p.headerProblem ? alertBox(p.headerProblem) : null,
    stackable(h(
      "table",
      null,
      h("caption", null, caption),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Row"), h("th", { scope: "col" }, "Email"), h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Company"), h("th", { scope: "col" }, rejected ? "Why it was rejected" : "Problems"))),
      h(
        "tbody",
        null,
        ...shown.map((r) => {
          const problems = rejected ? (byRow.get(r.row) ?? []) : r.problems;
          return h(
            "tr",
            { "data-row": String(r.row), class: problems.length ? "row-bad" : "" },
            h("td", null, String(r.row)),
            h("td", null, r.email),
            h("td", null, r.name),
            h("td", null, r.companyId),
            h("td", { class: problems.length ? "msg-error" : "" }, problems.length ? problems.join("; ") : "OK"),
          );
        }),
        ...(rejected ?? [])
          .filter((x) => !p.rows.some((r) => r.row === x.row))
          .map((x) => h("tr", { "data-row": String(x.row), class: "row-bad" }, h("td", null, String(x.row)), h("td", { colspan: 3 }, ""), h("td", { class: "msg-error" }, x.error))),
      ),
    )),
  );
}
