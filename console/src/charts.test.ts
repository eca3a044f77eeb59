import { describe, expect, it } from "vitest";

import { barList, lineChart, linePath, niceMax, scaled, stackedColumns } from "./charts";

describe("axis and geometry", () => {
  it("rounds the axis up to 1, 2, 2.5, 5 or 10 times a power of ten", () => {
    expect([0, 0.3, 0.73, 1, 3, 12, 240, 2600].map(niceMax)).toEqual([1, 0.5, 1, 1, 5, 20, 250, 5000]);
  });

  it("scales values into the height, clipped, keeping gaps", () => {
    expect(scaled([0, 0.5, 1, 2, null], 1, 100)).toEqual([0, 50, 100, 100, null]);
  });

  it("draws a line through evenly spaced points and breaks it where data is missing", () => {
    expect(linePath([0, 1, null, 0.5], 1, 300, 100)).toBe("M0,100L100,0M300,50");
    expect(linePath([0.25], 1, 200, 100)).toBe("M100,75");
  });
});

describe("charts", () => {
  const pct = (v: number) => `${Math.round(v * 100)}%`;

  it("a line chart is one labelled image with its numbers in a table", () => {
    const fig = lineChart({ id: "booking-rate", title: "Booking rate", format: pct, max: 1 }, [
      { label: "1 Mar", value: 0.2 },
      { label: "2 Mar", value: null },
      { label: "3 Mar", value: 0.6 },
    ]);
    expect(fig.dataset["chart"]).toBe("booking-rate");
    const img = fig.querySelector("svg[role=img]");
    expect(img?.getAttribute("aria-label")).toBe("Booking rate: 3 values, highest 60% (3 Mar), lowest 20% (1 Mar)");
    expect(fig.querySelectorAll("circle.dot")).toHaveLength(2); // one per known value, none for the gap
    const cells = [...fig.querySelectorAll("tbody tr")].map((tr) => [...tr.children].map((c) => c.textContent));
    expect(cells).toEqual([["1 Mar", "20%"], ["2 Mar", "n/a"], ["3 Mar", "60%"]]);
  });

  it("stacked columns sum their parts, name them in a legend and draw nothing for zero", () => {
    const fig = stackedColumns({ id: "ad-hoc", title: "Ad hoc and planned", format: String }, [
      { label: "W1", parts: [{ name: "Planned", value: 3 }, { name: "Ad hoc", value: 1 }] },
      { label: "W2", parts: [{ name: "Planned", value: 0 }, { name: "Ad hoc", value: 2 }] },
    ]);
    expect([...fig.querySelectorAll(".legend li")].map((li) => li.textContent)).toEqual(["Planned", "Ad hoc"]);
    expect(fig.querySelector("svg")?.getAttribute("aria-label")).toBe("Ad hoc and planned: Planned 3, Ad hoc 3");
    expect(fig.querySelectorAll("rect")).toHaveLength(3);
  });

  it("a bar list writes each value beside its bar, widest for the largest", () => {
    const fig = barList({ id: "popular", title: "Most popular", format: pct, max: 1 }, [
      { label: "Board Room", value: 0.8 },
      { label: "Huddle", value: 0.4 },
    ]);
    const widths = [...fig.querySelectorAll("rect")].map((r) => Number(r.getAttribute("width")));
    expect(widths[0]).toBeCloseTo(2 * (widths[1] ?? 0));
    expect([...fig.querySelectorAll("svg text")].map((t) => t.textContent)).toEqual(["Board Room", "80%", "Huddle", "40%"]);
  });
});
