import { describe, expect, it } from "vitest";
import { parseCsv, previewImport } from "./csv";

describe("parseCsv", () => {
  it("reads quotes, doubled quotes, CRLF and a BOM", () => {
    expect(parseCsv('\uFEFFa,b\r\n"x, y","say ""hi"""\n')).toEqual([
      ["a", "b"],
      ["x, y", 'say "hi"'],
    ]);
  });

  it("keeps a newline inside quotes and skips blank lines", () => {
    expect(parseCsv('a\n"line1\nline2"\n\n')).toEqual([["a"], ["line1\nline2"]]);
  });
});

describe("previewImport", () => {
  it("flags bad rows and numbers them as the API does", () => {
    const p = previewImport(
      "Email,Name,companyId\nann@contoso.com,Ann,contoso\nnot-an-email,Bob,contoso\nann@contoso.com,Ann 2,contoso\ncy@x.com,,nope\n",
      ["contoso"],
    );
    expect(p.headerProblem).toBeNull();
    expect(p.rows.map((r) => [r.row, r.problems])).toEqual([
      [1, []],
      [2, ["email is not an email address"]],
      [3, ["repeats row 1"]],
      [4, ["name is missing", "no company nope in this building"]],
    ]);
    expect(p.problemCount).toBe(3);
  });

  it("names a bad header", () => {
    expect(previewImport("email,name\n").headerProblem).toContain("lacks companyId");
    expect(previewImport("email,name,companyId,age\n").headerProblem).toContain("unknown columns: age");
    expect(previewImport("").headerProblem).toBe("The file is empty.");
  });
});
