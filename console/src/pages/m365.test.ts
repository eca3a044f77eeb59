import { describe, expect, it } from "vitest";
import { returnUrl, takeConnectOutcome } from "./m365";

describe("connect return URL", () => {
  it("comes back to this building's Microsoft 365 page", () => {
    const loc = { origin: "http://127.0.0.1:7071", pathname: "/api/console/" } as Location;
    expect(returnUrl("hq-1", loc)).toBe("http://127.0.0.1:7071/api/console/#/b/hq-1/m365");
  });

  it("reads the callback's status and reason once, then removes them", () => {
    history.replaceState(null, "", "/api/console/?status=error&reason=account_mismatch&keep=1#/b/hq/m365");
    expect(takeConnectOutcome()).toEqual({ status: "error", reason: "account_mismatch" });
    expect(location.search).toBe("?keep=1");
    expect(location.hash).toBe("#/b/hq/m365");
    expect(takeConnectOutcome()).toBeNull();
  });
});
