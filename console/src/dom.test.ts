import { describe, expect, it } from "vitest";
import { h } from "./dom";

describe("h", () => {
  it("sets styles through the CSSOM (a strict CSP blocks style attributes)", () => {
    const el = h("li", { style: "left:12.5%;width:4%" });
    expect(el.style.left).toBe("12.5%");
    expect(el.style.width).toBe("4%");
  });

  it("sets attributes, boolean attributes, listeners and children", () => {
    let clicked = 0;
    const b = h("button", { type: "button", disabled: false, hidden: true, onclick: () => (clicked += 1) }, "Go", null, ["!"]);
    b.click();
    expect(b.getAttribute("type")).toBe("button");
    expect(b.hasAttribute("disabled")).toBe(false);
    expect(b.hasAttribute("hidden")).toBe(true);
    expect(b.textContent).toBe("Go!");
    expect(clicked).toBe(1);
  });
});
