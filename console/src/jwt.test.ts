import { describe, expect, it } from "vitest";
import { buildingsOf, decodePayload, rolesOf } from "./jwt";

function token(payload: unknown): string {
  const b64 = (s: string) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${b64('{"alg":"RS256"}')}.${b64(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(payload))))}.sig`;
}

describe("access token claims", () => {
  it("reads the buildings claim as a list or a comma-separated string", () => {
    expect(buildingsOf(decodePayload(token({ buildings: ["b2", "b1", "b1"] })))).toEqual(["b1", "b2"]);
    expect(buildingsOf(decodePayload(token({ buildings: "hq, annex" })))).toEqual(["annex", "hq"]);
    expect(buildingsOf(decodePayload(token({})))).toEqual([]);
  });

  it("reads roles and survives non-ASCII names", () => {
    const claims = decodePayload(token({ roles: ["Building.Admin"], name: "Zoë Ørsted" }));
    expect(rolesOf(claims)).toEqual(["Building.Admin"]);
    expect(claims?.["name"]).toBe("Zoë Ørsted");
  });

  it("answers null for what is not a JWT", () => {
    expect(decodePayload("nope")).toBeNull();
    expect(decodePayload("a.!!!.c")).toBeNull();
  });
});
