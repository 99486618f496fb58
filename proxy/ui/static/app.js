// The page: wires the form, the two panes and the length series to wire.js and chart.js.

import { drawChart, ratio } from "./chart.js";
import { run } from "./wire.js";

const $ = (id) => document.getElementById(id);
let deployments = [];
let chartPoints = [];
let key = "";  // only ever in this variable: never stored, never put in a URL

function seconds(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(2)} s`;
}

function requestOptions(extra) {
  const sim = $("use-sim").checked ? {
    scenario: $("ending").value,
    firstMs: Math.max(0, Number($("first-ms").value) || 0),
    tokenMs: Math.max(0, Number($("token-ms").value) || 0),
  } : null;
  return {
    api: document.querySelector("input[name=api]:checked").value,
    deployment: $("deployment").value,
    prompt: $("prompt").value,
    key,
    chars: Math.max(20, Number($("chars").value) || 1500),
    sim,
    ...extra,
  };
}

// --- one pane ---------------------------------------------------------------------------

class Pane {
  constructor(root) {
    this.root = root;
    this.output = root.querySelector("[data-role=output]");
    this.state = root.querySelector("[data-role=state]");
    this.notice = root.querySelector("[data-role=notice]");
  }

  stat(name, text) {
    this.root.querySelector(`[data-stat=${name}]`).textContent = text;
  }

  reset() {
    this.output.textContent = "";
    this.textNode = document.createTextNode("");
    this.output.append(this.textNode);
    this.notice.hidden = true;
    this.notice.textContent = "";
    this.root.classList.remove("failed");
    for (const name of ["first", "total", "tokens", "finish", "ratelimit"]) this.stat(name, "–");
    this.state.textContent = "Waiting…";
  }

  append(text) {
    const atEnd = this.output.scrollHeight - this.output.scrollTop - this.output.clientHeight < 8;
    this.textNode.appendData(text);
    if (atEnd) this.output.scrollTop = this.output.scrollHeight;  // follow, unless scrolled up
    if (this.state.textContent === "Waiting…") this.state.textContent = "Receiving…";
  }

  show(out) {
    this.stat("first", seconds(out.firstText));
    this.stat("total", seconds(out.total));
    this.stat("tokens", out.tokens === null ? "–" : String(out.tokens));
    this.stat("finish", out.finish || "–");
    this.stat("ratelimit", out.rateLimitRemaining ?? "–");
    this.state.textContent = out.error && !out.filter ? "Failed." : `Done (HTTP ${out.status}).`;
    if (out.filter) {
      this.notice.hidden = false;
      const message = out.filter.message.replace(/\.+$/, "");
      this.notice.textContent = `Content filter (${out.filter.category}): ${message}. ` +
        `${out.text.length} characters arrived before the cut${out.text ? " (shown above)" : ""}.`;
    } else if (out.error) {
      this.notice.hidden = false;
      this.notice.textContent = out.error;
      this.root.classList.add("failed");
    }
  }
}

// --- the comparison -----------------------------------------------------------------------

async function compare() {
  const button = $("run");
  const panes = { stream: new Pane($("pane-stream")), plain: new Pane($("pane-plain")) };
  setBusy(true);
  $("compare-status").textContent = "Sending both requests…";
  panes.stream.reset();
  panes.plain.reset();
  const options = requestOptions({});
  const [streamed, plain] = await Promise.all([
    run({ ...options, stream: true }, (text) => panes.stream.append(text)),
    run({ ...options, stream: false }, (text) => panes.plain.append(text)),
  ]);
  panes.stream.show(streamed);
  panes.plain.show(plain);
  const lead = streamed.firstText !== null && plain.firstText !== null
    ? ` The streamed text showed ${(plain.firstText - streamed.firstText).toFixed(2)} s sooner.` : "";
  $("compare-status").textContent = `Done.${lead}`;
  setBusy(false);
  button.focus();
}

// --- the series ---------------------------------------------------------------------------

function parseLengths(text) {
  const values = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (!values.length || values.some((v) => !Number.isInteger(v) || v < 20 || v > 20000)) return null;
  return [...new Set(values)].sort((a, b) => a - b);
}

function addRow(point) {
  const row = document.createElement("tr");
  const r = ratio(point);
  const cells = [point.asked, point.chars, point.streamFirst.toFixed(2), point.streamTotal.toFixed(2),
    point.plainTotal.toFixed(2), (point.plainTotal - point.streamFirst).toFixed(2),
    r === null ? "–" : `${r.toFixed(1)}×`];
  for (const value of cells) {
    const cell = document.createElement("td");
    cell.textContent = String(value);
    row.append(cell);
  }
  $("series-table").tBodies[0].append(row);
}

async function series() {
  const lengths = parseLengths($("lengths").value);
  const status = $("series-status");
  if (!lengths) {
    status.textContent = "Give whole numbers of characters from 20 to 20000, separated by commas.";
    $("lengths").focus();
    return;
  }
  setBusy(true);
  const progress = $("series-progress");
  progress.max = lengths.length;
  progress.value = 0;
  $("series-table").tBodies[0].replaceChildren();
  const points = [];
  chartPoints = points;
  drawChart($("chart"), points);
  const base = requestOptions({ askLength: true });
  // Lengths one after another, so no request competes with another length's.
  for (const chars of lengths) {
    status.textContent = `${chars} characters: streaming and not…`;
    const options = { ...base, chars, sim: base.sim && { ...base.sim, scenario: "stop" } };
    const [streamed, plain] = await Promise.all([
      run({ ...options, stream: true }), run({ ...options, stream: false })]);
    const failed = [streamed, plain].find((o) => o.error || o.firstText === null);
    if (failed) {
      status.textContent = `Stopped at ${chars} characters: ${failed.error || "no text came back"}`;
      setBusy(false);
      return;
    }
    const point = { asked: chars, chars: streamed.text.length, streamFirst: streamed.firstText,
      streamTotal: streamed.total, plainTotal: plain.total };
    points.push(point);
    addRow(point);
    drawChart($("chart"), points);
    progress.value = points.length;
  }
  const last = points[points.length - 1];
  status.textContent = `Done: at ${last.chars} characters the streamed text showed ` +
    `${ratio(last).toFixed(1)}× sooner.`;
  setBusy(false);
}

// --- page setup ---------------------------------------------------------------------------

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  for (const id of ["run", "run-series"]) $(id).disabled = busy;
}

function selectTab(tab) {
  for (const other of document.querySelectorAll("[role=tab]")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (!$("view-series").hidden) drawChart($("chart"), chartPoints);  // sized now it shows
  tab.focus();
}

function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) {
        event.preventDefault();
        selectTab(tabs[(i + step + tabs.length) % tabs.length]);
      }
    });
  });
}

function syncSimulator() {
  const chosen = deployments.find((d) => d.name === $("deployment").value);
  $("use-sim").checked = Boolean(chosen && chosen.simulated);
  syncSimFields();
}

function syncSimFields() {
  for (const input of $("sim").querySelectorAll("select, input[type=number]")) {
    input.disabled = !$("use-sim").checked;
  }
}

async function loadDeployments() {
  const select = $("deployment");
  try {
    const response = await fetch("/_proxy/ui/info.json");
    deployments = (await response.json()).deployments;
  } catch {
    deployments = [];
  }
  for (const d of deployments) select.append(new Option(d.simulated ? `${d.name} (simulated)` : d.name, d.name));
  if (!deployments.length) {
    $("compare-status").textContent = "No deployments are configured on this proxy.";
    setBusy(true);
  }
  syncSimulator();
}

function init() {
  setupTabs();
  $("key").addEventListener("input", (event) => { key = event.target.value; });
  $("deployment").addEventListener("change", syncSimulator);
  $("use-sim").addEventListener("change", syncSimFields);
  $("request").addEventListener("submit", (event) => event.preventDefault());
  $("run").addEventListener("click", compare);
  $("run-series").addEventListener("click", series);
  drawChart($("chart"), chartPoints);
  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => drawChart($("chart"), chartPoints));
  });
  return loadDeployments();
}

window.pageReady = init();
