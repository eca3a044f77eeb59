import { describe, expect, it } from "vitest";
import { describeProblem, fieldErrors, parseProblem } from "./problem";

describe("parseProblem", () => {
  it("reads RFC 9457 fields and keeps the extra members", () => {
    const p = parseProblem(422, {
      type: "https://bookingbridge/errors/rows_rejected",
      title: "Unprocessable",
      status: 422,
      detail: "2 rows rejected",
      reason: "rows_rejected",
      imported: 0,
      rejected: [{ row: 2, error: "bad email" }],
    });
    expect(p.reason).toBe("rows_rejected");
    expect(p.extra).toEqual({ imported: 0, rejected: [{ row: 2, error: "bad email" }] });
  });

  it("survives a body that is not problem+json", () => {
    const p = parseProblem(502, "<html>Bad gateway</html>", "Bad Gateway");
    expect(p.title).toBe("Bad Gateway");
    expect(p.status).toBe(502);
    expect(p.errors).toEqual([]);
  });
});

describe("describeProblem", () => {
  it("explains a 409 calendar_mapped in words", () => {
    const text = describeProblem(
      parseProblem(409, { status: 409, title: "Conflict", detail: "calendar is mapped to resource room-2", reason: "calendar_mapped" }),
    );
    expect(text).toContain("already mapped to another resource");
    expect(text).toContain("room-2");
    expect(text).toContain("pick another calendar");
  });

  it("explains a 422 by its reason and keeps the detail", () => {
    const text = describeProblem(parseProblem(422, { status: 422, detail: "resource is paid", reason: "not_supported" }));
    expect(text).toMatch(/^Not possible: Paid resources/);
    expect(text).toContain("resource is paid");
  });

  it("falls back to the title", () => {
    expect(describeProblem(parseProblem(500, {}, "Internal Server Error"))).toBe("Internal Server Error.");
  });
});

describe("fieldErrors", () => {
  it("maps each invalid field to its messages", () => {
    const p = parseProblem(400, {
      errors: [
        { field: "name", message: "is required" },
        { field: "timeZone", message: "is not an IANA zone" },
        { field: "name", message: "is too long" },
      ],
    });
    expect(Object.fromEntries(fieldErrors(p))).toEqual({
      name: "is required; is too long",
      timeZone: "is not an IANA zone",
    });
  });
});

describe("describeProblem wording", () => {
  it("says a repeated meaning once", () => {
    const text = describeProblem(
      parseProblem(409, { status: 409, detail: "That calendar is already mapped to another resource", reason: "calendar_mapped" }),
    );
    expect(text).toBe(
      "Conflict: This calendar is already mapped to another resource. Unmap it from that resource first, or pick another calendar.",
    );
  });
});
