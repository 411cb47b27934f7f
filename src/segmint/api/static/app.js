// segmint web page: no build step, no external script; talks to the API of this server.
"use strict";

const state = { model: null, segments: [] };

function apiKey() { return document.getElementById("api-key").value.trim(); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) { headers["X-API-Key"] = apiKey(); }
  try {
    return await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    // no answer at all (server stopped, network down): an error in the API's own shape,
    // so every caller shows it (the page showed nothing, or "scoring…" for ever)
    const body = { error: "unreachable", message: "the service cannot be reached (" + e.message + ")",
                   hint: "check that segmint serve is running, then try again", field: null };
    return new Response(JSON.stringify(body), { status: 503, headers: { "Content-Type": "application/json" } });
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body;
  } catch (e) {
    return { message: "HTTP " + response.status, field: null };
  }
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { node.setAttribute(k, v); }
  if (text) { node.textContent = text; }
  return node;
}

// A number as typed, read the way fmt() writes numbers in this browser's language
// (English 18,441 and German 18.441 are both eighteen thousand: "18,441" was read as
// 18.441), also with a decimal comma (2,5) or point; NaN when it is no number.
function parseNumber(raw) {
  let s = raw.replace(/[\s\u00a0\u202f'\u2019]/g, "");
  const comma = s.includes(","), point = s.includes(".");
  if (comma && point) {
    const dec = s.lastIndexOf(",") > s.lastIndexOf(".") ? "," : ".";
    const grp = dec === "," ? "." : ",";
    if (!grouped(s, grp, dec)) { return NaN; }
    s = s.split(grp).join("").replace(dec, ".");
  } else if (comma || point) {
    const sep = comma ? "," : ".";
    if (grouped(s, sep, null) && (s.split(sep).length > 2 || sep === groupSeparator())) {
      s = s.split(sep).join("");
    } else if (comma) {
      if (s.split(",").length > 2) { return NaN; }
      s = s.replace(",", ".");
    }
  }
  return s === "" ? NaN : Number(s);
}

// 1,234 or 1,234,567.5: digits in threes after the first group, separated by grp
function grouped(s, grp, dec) {
  const tail = dec ? "(\\" + dec + "\\d*)?" : "";
  return new RegExp("^[+-]?\\d{1,3}(\\" + grp + "\\d{3})+" + tail + "$").test(s);
}

function groupSeparator() {
  const part = new Intl.NumberFormat().formatToParts(12345).find((p) => p.type === "group");
  return part ? part.value : ",";
}

function fmt(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) { return "–"; }
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// ---------------------------------------------------------------- tabs
function showTab(name) {
  for (const tab of ["predict", "dashboard", "score"]) {
    const selected = tab === name;
    document.getElementById("tab-" + tab).setAttribute("aria-selected", String(selected));
    document.getElementById("panel-" + tab).hidden = !selected;
  }
  if (name === "dashboard") { loadDashboard(); }
}

// ---------------------------------------------------------------- predict form
function buildForm(model) {
  const fields = document.getElementById("fields");
  fields.textContent = "";
  const ranges = model.feature_ranges || {};
  const medians = model.feature_medians || {};
  for (const name of model.features) {
    const wrap = el("div", { class: "field" });
    const id = "f-" + name;
    wrap.appendChild(el("label", { for: id }, name.replace(/_/g, " ")));
    const range = ranges[name];
    const input = el("input", { id: id, name: name, inputmode: "decimal", required: "required",
                                "aria-describedby": id + "-help " + id + "-error" });
    // a typical customer: the training median (the middle of a skewed range is far from
    // anyone); the middle of the range for a model saved without medians
    const median = medians[name];
    const typical = median !== undefined && median !== null ? median
      : (range ? (range[0] + range[1]) / 2 : null);
    if (typical !== null) { input.setAttribute("placeholder", fmt(typical)); }
    wrap.appendChild(input);
    let help = range ? `training data: ${fmt(range[0], 2)} to ${fmt(range[1], 2)}` : "text";
    if (range && median !== undefined && median !== null) { help += `, median ${fmt(median, 2)}`; }
    wrap.appendChild(el("div", { class: "help", id: id + "-help" }, help));
    wrap.appendChild(el("div", { class: "field-error", id: id + "-error", role: "alert" }));
    fields.appendChild(wrap);
  }
}

function clearErrors() {
  document.getElementById("form-error").textContent = "";
  for (const node of document.querySelectorAll(".field-error")) { node.textContent = ""; }
  for (const node of document.querySelectorAll("#fields input")) { node.removeAttribute("aria-invalid"); }
}

function showFieldError(field, message) {
  const name = (field || "").split(".").pop();
  const input = document.getElementById("f-" + name);
  if (input) {
    input.setAttribute("aria-invalid", "true");
    document.getElementById("f-" + name + "-error").textContent = message;
    input.focus();
  } else {
    document.getElementById("form-error").textContent = message;
  }
}

async function predict(event) {
  event.preventDefault();
  clearErrors();
  const customer = {};
  for (const input of document.querySelectorAll("#fields input")) {
    const raw = input.value.trim();
    if (raw === "") { showFieldError(input.name, input.name + " is required"); return; }
    const categorical = !(state.model.feature_ranges || {})[input.name];
    const value = categorical ? raw : parseNumber(raw);
    if (!categorical && !Number.isFinite(value)) { showFieldError(input.name, input.name + " must be a number"); return; }
    customer[input.name] = value;
  }
  const response = await api("/v1/predict", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ customer: customer }),
  });
  const result = document.getElementById("result");
  result.textContent = "";
  if (!response.ok) {
    const err = await errorOf(response);
    showFieldError(err.field, err.message + (err.hint ? " (" + err.hint + ")" : ""));
    return;
  }
  const body = await response.json();
  const card = el("div", { class: "card", id: "prediction" });
  card.appendChild(el("h3", { id: "predicted-segment" }, body.segment_name));
  card.appendChild(el("p", {}, "Suggested action: " + body.action));
  const conf = body.confidence === null ? "" : ` · confidence ${fmt(body.confidence * 100)} %`;
  card.appendChild(el("p", { class: "muted" }, `segment ${body.segment_id}${conf}` +
    (body.rfm_segment
      ? ` · RFM segment${body.rfm_rule_set ? ` (${body.rfm_rule_set})` : ""}: ${body.rfm_segment}`
      : "")));
  for (const warning of body.warnings) { card.appendChild(el("p", { class: "error" }, "Warning: " + warning)); }
  const profile = state.segments.find((s) => s.segment_id === body.segment_id);
  if (profile) {
    const table = el("table");
    const head = el("tr");
    for (const h of ["feature", "this customer", "segment mean", "mean of all customers"]) { head.appendChild(el("th", {}, h)); }
    table.appendChild(head);
    for (const name of Object.keys(customer)) {
      if (profile["mean_" + name] === undefined) { continue; }
      const row = el("tr");
      row.appendChild(el("td", {}, name));
      row.appendChild(el("td", {}, fmt(customer[name], 1)));
      row.appendChild(el("td", {}, fmt(profile["mean_" + name], 1)));
      // the profile's index is the segment mean against all customers' (= 100)
      const index = profile["index_" + name];
      const overall = index ? profile["mean_" + name] / index * 100 : null;
      row.appendChild(el("td", {}, overall === null ? "–" : fmt(overall, 1)));
      table.appendChild(row);
    }
    card.appendChild(el("div", { class: "table-wrap" })).appendChild(table);
  }
  result.appendChild(card);
}

// ---------------------------------------------------------------- dashboard
function bars(segments) {
  const width = 640, rowH = 28, left = 190;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${rowH * segments.length * 2 + 20}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Share of customers and of revenue per segment");
  svg.setAttribute("id", "dashboard-bars");
  svg.style.width = "100%";
  let y = 10;
  for (const s of segments) {
    for (const [what, value, color] of [["customers", s.share_customers, "#2f6fde"], ["revenue", s.share_revenue, "#f08c00"]]) {
      const text = document.createElementNS(svgNS, "text");
      text.setAttribute("x", 0); text.setAttribute("y", y + 16); text.setAttribute("class", "bar-label");
      text.textContent = what === "customers" ? s.name : "";
      svg.appendChild(text);
      const rect = document.createElementNS(svgNS, "rect");
      const w = Math.max(0, (value || 0)) * (width - left - 60);
      rect.setAttribute("x", left); rect.setAttribute("y", y + 4); rect.setAttribute("width", w);
      rect.setAttribute("height", rowH - 10); rect.setAttribute("fill", color);
      svg.appendChild(rect);
      const label = document.createElementNS(svgNS, "text");
      label.setAttribute("x", left + w + 4); label.setAttribute("y", y + 16); label.setAttribute("class", "bar-label");
      label.textContent = `${fmt((value || 0) * 100, 1)} % of ${what}`;
      svg.appendChild(label);
      y += rowH;
    }
  }
  return svg;
}

async function loadDashboard() {
  const table = document.getElementById("dashboard-table");
  const chart = document.getElementById("dashboard-chart");
  if (!state.segments.length) { await loadSegments(); }
  chart.textContent = "";
  table.textContent = "";
  if (!state.segments.length) { return; }
  chart.appendChild(bars(state.segments));
  const head = el("tr");
  for (const h of ["segment", "customers", "share", "revenue share", "suggested action"]) { head.appendChild(el("th", {}, h)); }
  table.appendChild(head);
  for (const s of state.segments) {
    const row = el("tr");
    row.appendChild(el("td", {}, s.name));
    row.appendChild(el("td", {}, fmt(s.size)));
    row.appendChild(el("td", {}, fmt(s.share_customers * 100, 1) + " %"));
    row.appendChild(el("td", {}, s.share_revenue === null ? "–" : fmt(s.share_revenue * 100, 1) + " %"));
    row.appendChild(el("td", {}, s.action));
    table.appendChild(row);
  }
}

// ---------------------------------------------------------------- score a file
async function scoreFile(event) {
  event.preventDefault();
  const error = document.getElementById("score-error");
  const out = document.getElementById("score-result");
  error.textContent = ""; out.textContent = "";
  const file = document.getElementById("score-file").files[0];
  if (!file) { error.textContent = "choose a file first"; return; }
  const data = new FormData();
  data.append("file", file);
  out.textContent = "scoring…";
  const response = await api("/v1/score?format=csv", { method: "POST", body: data });
  out.textContent = "";
  if (!response.ok) {
    const err = await errorOf(response);
    error.textContent = err.message + (err.hint ? " (" + err.hint + ")" : "");
    return;
  }
  const text = await response.text();
  const lines = text.trim().split("\n").length - 1;
  const link = el("a", { id: "score-download", download: file.name.replace(/\.[^.]+$/, "") + "-segments.csv" },
                  `Download ${fmt(lines)} scored customers (CSV)`);
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  out.appendChild(link);
  // the service's warnings (data unlike the training data, rows left out by cleaning)
  // came in a header the page did not read: the download looked as good as any other
  const notes = notesOf(response);
  if (notes.length) {
    const list = el("ul", { id: "score-notes", class: "notes" });
    for (const note of notes) { list.appendChild(el("li", {}, note)); }
    out.appendChild(list);
  }
}

function notesOf(response) {
  try {
    const notes = JSON.parse(response.headers.get("X-Segmint-Notes") || "[]");
    return Array.isArray(notes) ? notes.map(String) : [];
  } catch (e) {
    return [];
  }
}

// ---------------------------------------------------------------- start
async function loadSegments() {
  const response = await api("/v1/segments");
  if (response.ok) { state.segments = (await response.json()).segments; }
}

function start() {
  const saved = sessionStorage.getItem("segmint-api-key");
  if (saved) { document.getElementById("api-key").value = saved; }
  // registered once: registered on each load of the model, every key change doubled the
  // requests (2, 4, 8, ... calls of /v1/model after the third change)
  document.getElementById("api-key").addEventListener("change", () => {
    sessionStorage.setItem("segmint-api-key", apiKey());
    loadModel();
  });
  for (const tab of ["predict", "dashboard", "score"]) {
    document.getElementById("tab-" + tab).onclick = () => showTab(tab);
  }
  document.getElementById("predict-form").onsubmit = predict;
  document.getElementById("score-form").onsubmit = scoreFile;
  loadModel();
}

async function loadModel() {
  const info = document.getElementById("model-info");
  const response = await api("/v1/model");
  if (!response.ok) {
    const err = await errorOf(response);
    info.textContent = err.message + (err.hint ? " (" + err.hint + ")" : "");
    // no form of a model the key no longer opens
    state.model = null;
    state.segments = [];
    document.getElementById("fields").textContent = "";
    return;
  }
  state.model = await response.json();
  info.textContent = `${state.model.n_segments} segments (${state.model.algorithm}) from ` +
    `${fmt(state.model.training_customers)} customers; feature set ${state.model.feature_set} v${state.model.feature_set_version}`;
  buildForm(state.model);
  await loadSegments();
}

start();
