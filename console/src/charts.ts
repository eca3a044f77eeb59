// Charts as inline SVG (no chart library: a small bundle, and the console's Content-Security-Policy
// allows no inline styles, so colours come from classes in styles.css). Every chart is a <figure>
// with a caption, an SVG that screen readers read as one image with a summary, and its numbers
// in a table under "Show the numbers" for people who would rather read them.

import { h } from "./dom";

const SVG = "http://www.w3.org/2000/svg";

export interface Bar {
  label: string;
  value: number | null; // null: no data (drawn as a gap, listed as "n/a")
}

export interface Stack {
  label: string;
  parts: { name: string; value: number }[];
}

export interface ChartOptions {
  id: string; // data-chart hook
  title: string;
  format: (value: number) => string;
  /** The axis maximum; default: a round number at or above the largest value. */
  max?: number;
}

/** A round axis maximum at or above `value` (1, 2, 2.5, 5 or 10 times a power of ten). */
export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value - 1e-9) return step * power;
  return 10 * power;
}

/** Bar heights in [0, height] for values on an axis from 0 to max (null stays null). */
export function scaled(values: (number | null)[], max: number, height: number): (number | null)[] {
  return values.map((v) => (v === null ? null : Math.max(0, Math.min(height, (v / max) * height))));
}

/** An SVG path through the points (x evenly spaced over width), broken where a value is null. */
export function linePath(values: (number | null)[], max: number, width: number, height: number): string {
  const ys = scaled(values, max, height);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  let path = "";
  let pen = false;
  ys.forEach((y, i) => {
    if (y === null) {
      pen = false;
      return;
    }
    const x = values.length > 1 ? i * step : width / 2;
    path += `${pen ? "L" : "M"}${round(x)},${round(height - y)}`;
    pen = true;
  });
  return path;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

function svg(tag: string, attrs: Record<string, string | number>, ...children: Node[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

function text(x: number, y: number, value: string, cls: string, anchor = "start"): SVGElement {
  const t = svg("text", { x, y, class: cls, "text-anchor": anchor });
  t.textContent = value;
  return t;
}

function figure(opts: ChartOptions, summary: string, drawing: SVGElement, table: HTMLTableElement): HTMLElement {
  drawing.setAttribute("role", "img");
  drawing.setAttribute("aria-label", `${opts.title}: ${summary}`);
  return h(
    "figure",
    { class: "chart card", "data-chart": opts.id },
    h("figcaption", null, opts.title),
    drawing,
    h("details", null, h("summary", null, "Show the numbers"), table),
  );
}

function numbersTable(columns: string[], rows: (string | number)[][]): HTMLTableElement {
  return h(
    "table",
    { class: "chart-numbers" },
    h("thead", null, h("tr", null, ...columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, ...rows.map((r) => h("tr", null, ...r.map((c) => h("td", null, String(c)))))),
  );
}

const W = 640;
const H = 180;
const LEFT = 56; // room for the axis labels
const BOTTOM = 22;

function axis(max: number, format: (v: number) => string): SVGElement {
  const g = svg("g", { class: "axis" });
  for (const f of [0, 0.5, 1]) {
    const y = H - f * H;
    g.append(svg("line", { x1: LEFT, x2: W, y1: y, y2: y, class: "grid" }), text(LEFT - 6, y + 4, format(f * max), "tick", "end"));
  }
  return g;
}

function xLabels(labels: string[], band: number): SVGElement {
  const g = svg("g", { class: "axis" });
  // At most about eight labels, so they never overlap.
  const every = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((label, i) => {
    if (i % every === 0) g.append(text(LEFT + band * (i + 0.5), H + 16, label, "tick", "middle"));
  });
  return g;
}

function summaryOf(bars: Bar[], format: (v: number) => string): string {
  const known = bars.filter((b): b is { label: string; value: number } => b.value !== null);
  if (!known.length) return "no data";
  const hi = known.reduce((a, b) => (b.value > a.value ? b : a));
  const lo = known.reduce((a, b) => (b.value < a.value ? b : a));
  return `${bars.length} values, highest ${format(hi.value)} (${hi.label}), lowest ${format(lo.value)} (${lo.label})`;
}

/** Values over time as a line (booking rate, no-show rate). */
export function lineChart(opts: ChartOptions, points: Bar[]): HTMLElement {
  const values = points.map((p) => p.value);
  const max = opts.max ?? niceMax(Math.max(0, ...values.map((v) => v ?? 0)));
  const plot = W - LEFT;
  const band = points.length ? plot / points.length : plot;
  const drawing = svg(
    "svg",
    { viewBox: `0 0 ${W} ${H + BOTTOM}`, class: "chart-svg", preserveAspectRatio: "none" },
    axis(max, opts.format),
    svg("path", { d: linePath(values, max, plot - band, H), transform: `translate(${LEFT + band / 2},0)`, class: "line" }),
    // A dot per value: a single day (or a value between two gaps) is a point, not a line.
    ...scaled(values, max, H).flatMap((y, i) => (y === null ? [] : [svg("circle", { cx: round(LEFT + band * (i + 0.5)), cy: round(H - y), r: 3.5, class: "dot" })])),
    xLabels(points.map((p) => p.label), band),
  );
  const rows = points.map((p) => [p.label, p.value === null ? "n/a" : opts.format(p.value)]);
  return figure(opts, summaryOf(points, opts.format), drawing, numbersTable(["", opts.title], rows));
}

/** Stacked columns over time (ad hoc vs planned). Parts keep their order; the legend names them. */
export function stackedColumns(opts: ChartOptions, stacks: Stack[]): HTMLElement {
  const names = stacks[0]?.parts.map((p) => p.name) ?? [];
  const totals = stacks.map((s) => s.parts.reduce((a, p) => a + p.value, 0));
  const max = opts.max ?? niceMax(Math.max(0, ...totals));
  const plot = W - LEFT;
  const band = stacks.length ? plot / stacks.length : plot;
  const columns = svg("g", {});
  stacks.forEach((s, i) => {
    let base = H;
    s.parts.forEach((p, k) => {
      const [height = 0] = scaled([p.value], max, H);
      base -= height ?? 0;
      if (height) columns.append(svg("rect", { x: round(LEFT + band * i + band * 0.15), y: round(base), width: round(band * 0.7), height: round(height), class: `part part-${k}` }));
    });
  });
  const drawing = svg("svg", { viewBox: `0 0 ${W} ${H + BOTTOM}`, class: "chart-svg", preserveAspectRatio: "none" }, axis(max, opts.format), columns, xLabels(stacks.map((s) => s.label), band));
  const sums = names.map((n) => `${n} ${opts.format(stacks.reduce((a, s) => a + (s.parts.find((p) => p.name === n)?.value ?? 0), 0))}`);
  const fig = figure(opts, sums.join(", "), drawing, numbersTable(["", ...names], stacks.map((s) => [s.label, ...s.parts.map((p) => opts.format(p.value))])));
  fig.insertBefore(h("ul", { class: "legend" }, ...names.map((n, k) => h("li", null, h("span", { class: `swatch part-${k}`, "aria-hidden": "true" }), n))), fig.querySelector("details"));
  return fig;
}

/** Horizontal bars with their values written out (popular rooms, companies). */
export function barList(opts: ChartOptions, bars: Bar[]): HTMLElement {
  const max = opts.max ?? niceMax(Math.max(0, ...bars.map((b) => b.value ?? 0)));
  const row = 26;
  const labelWidth = 200;
  const valueWidth = 70;
  const plot = W - labelWidth - valueWidth;
  const drawing = svg("svg", { viewBox: `0 0 ${W} ${Math.max(row, bars.length * row)}`, class: "chart-svg bars" });
  bars.forEach((b, i) => {
    const y = i * row;
    const [width = 0] = scaled([b.value ?? 0], max, plot);
    drawing.append(
      text(labelWidth - 8, y + 17, b.label.length > 28 ? `${b.label.slice(0, 27)}…` : b.label, "tick", "end"),
      svg("rect", { x: labelWidth, y: y + 5, width: round(width ?? 0), height: row - 10, class: "part part-0" }),
      text(labelWidth + (width ?? 0) + 6, y + 17, b.value === null ? "n/a" : opts.format(b.value), "tick"),
    );
  });
  const rows = bars.map((b) => [b.label, b.value === null ? "n/a" : opts.format(b.value)]);
  return figure(opts, summaryOf(bars, opts.format), drawing, numbersTable(["", opts.title], rows));
}
