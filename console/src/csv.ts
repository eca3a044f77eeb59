// CSV import preview: RFC 4180 parsing and the checks the console can make before sending
// (the API validates again and is the judge: its rejected rows are shown too). Pure.

export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  let i = 0;
  const src = text.replace(/^\uFEFF/, "");
  while (i < src.length) {
    const c = src[i] as string;
    if (quoted) {
      if (c === '"' && src[i + 1] === '"') {
        cell += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else cell += c;
      i += 1;
      continue;
    }
    if (c === '"' && cell === "") quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
      if (c === "\r" && src[i + 1] === "\n") i += 1;
    } else cell += c;
    i += 1;
  }
  if (cell !== "" || row.length) {
    row.push(cell);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0]?.trim() === ""));
}

export const IMPORT_COLUMNS = ["email", "name", "companyId"] as const;

export interface PreviewRow {
  /** 1 = the first user after the header, as the API numbers rejected rows. */
  row: number;
  email: string;
  name: string;
  companyId: string;
  problems: string[];
}

export interface ImportPreview {
  headerProblem: string | null;
  rows: PreviewRow[];
  problemCount: number;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function previewImport(text: string, knownCompanies: string[] = []): ImportPreview {
  const table = parseCsv(text);
  const header = (table[0] ?? []).map((h) => h.trim());
  const lower = header.map((h) => h.toLowerCase());
  const missing = IMPORT_COLUMNS.filter((c) => !lower.includes(c.toLowerCase()));
  const unknown = header.filter((h) => h !== "" && !IMPORT_COLUMNS.some((c) => c.toLowerCase() === h.toLowerCase()));
  const twice = lower.filter((h, i) => h !== "" && lower.indexOf(h) !== i);
  const headerProblem = !table.length
    ? "The file is empty."
    : missing.length
      ? `The header lacks ${missing.join(", ")} (it must name email, name and companyId).`
      : unknown.length
        ? `The header names unknown columns: ${unknown.join(", ")}.`
        : twice.length
          ? `The header names ${[...new Set(twice)].join(", ")} twice.`
          : null;
  const index = (c: string) => lower.indexOf(c.toLowerCase());
  const seen = new Map<string, number>();
  const companies = new Set(knownCompanies);
  const rows = table.slice(1).map((cells, i): PreviewRow => {
    const get = (c: string) => (index(c) >= 0 ? (cells[index(c)] ?? "").trim() : "");
    const r: PreviewRow = { row: i + 1, email: get("email"), name: get("name"), companyId: get("companyId"), problems: [] };
    if (!EMAIL.test(r.email)) r.problems.push("email is not an email address");
    if (!r.name) r.problems.push("name is missing");
    if (!r.companyId) r.problems.push("companyId is missing");
    else if (companies.size && !companies.has(r.companyId)) r.problems.push(`no company ${r.companyId} in this building`);
    if (cells.length > header.length) r.problems.push(`a value under no column (column ${header.length + 1})`);
    const key = r.email.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined && key) r.problems.push(`repeats row ${first}`);
    else seen.set(key, r.row);
    return r;
  });
  return { headerProblem, rows, problemCount: rows.filter((r) => r.problems.length).length };
}
