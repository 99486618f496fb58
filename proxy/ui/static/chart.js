// The head-start chart: seconds against output length, as inline SVG (no library).

const NS = "http://www.w3.org/2000/svg";
const PAD = { left: 56, right: 24, top: 28, bottom: 48 };

export const SERIES = [
  { key: "streamFirst", label: "streamed: first text", cls: "s-first" },
  { key: "streamTotal", label: "streamed: whole answer", cls: "s-total" },
  { key: "plainTotal", label: "not streamed: first text = whole answer", cls: "p-total" },
];

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A round step for about five grid lines, and the first multiple of it at or above `value`.
function scale(value) {
  if (!(value > 0)) return { step: 1, top: 5 };
  const rough = value / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough);
  return { step, top: step * Math.ceil(value / step - 1e-9) };
}

export function ratio(point) {
  return point.streamFirst > 0 ? point.plainTotal / point.streamFirst : null;
}

// points: [{chars, streamFirst, streamTotal, plainTotal}] in seconds.
// Drawn at the element's own width, so its text stays readable on a phone.
export function drawChart(svg, points) {
  const W = Math.max(320, Math.round(svg.clientWidth || 960));
  const H = W < 600 ? 300 : 380;
  const narrow = W < 600;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const xs = scale(Math.max(0, ...points.map((p) => p.chars)));
  const ys = scale(Math.max(0, ...points.flatMap((p) => [p.streamTotal, p.plainTotal])));
  const xMax = xs.top;
  const yMax = ys.top;
  const x = (v) => PAD.left + (v / xMax) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);

  const axes = el("g", { class: "axes" });
  for (let vy = 0; vy <= yMax + 1e-9; vy += ys.step) {
    axes.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(vy), y2: y(vy), class: "grid" }));
    axes.append(el("text", { x: PAD.left - 8, y: y(vy) + 4, "text-anchor": "end" }, `${+vy.toFixed(2)} s`));
  }
  for (let vx = 0; vx <= xMax + 1e-9; vx += xs.step) {
    axes.append(el("text", { x: x(vx), y: H - PAD.bottom + 18, "text-anchor": "middle" }, `${Math.round(vx)}`));
  }
  axes.append(el("text", { x: (W + PAD.left) / 2, y: H - 8, "text-anchor": "middle" },
    "output length (characters)"));
  svg.append(axes);

  // Drawn last to first: the streamed lines stay visible where the lines meet.
  for (const series of [...SERIES].reverse()) {
    const g = el("g", { class: series.cls });
    const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.chars).toFixed(1)},${y(p[series.key]).toFixed(1)}`);
    if (points.length > 1) g.append(el("path", { d: path.join(" "), fill: "none" }));
    for (const p of points) g.append(el("circle", { cx: x(p.chars), cy: y(p[series.key]), r: 4 }));
    svg.append(g);
  }

  const labels = el("g", { class: "ratios" });
  for (const p of points) {
    const r = ratio(p);
    if (r === null) continue;
    const px = x(p.chars);
    const anchor = px > W - PAD.right - 50 ? "end" : px < PAD.left + 50 ? "start" : "middle";
    labels.append(el("text", { x: px, y: y(p.plainTotal) - 10, "text-anchor": anchor },
      `${r >= 10 ? Math.round(r) : r.toFixed(1)}×${narrow ? "" : " sooner"}`));
  }
  svg.append(labels);
}
