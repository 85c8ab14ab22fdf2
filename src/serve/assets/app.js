// vla-demo serve: the page. Every view is drawn here from the numbers one
// POST /api/predict returns; changing the query, layer, head or method never
// asks the server again. No library, nothing from the network but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SIDE = 448;

const state = {
  scene: null,      // {name} | {split, seed} | {file}
  image: null,      // HTMLImageElement of the current picture
  result: null,     // the last /api/predict answer
  maps: null,       // decoded maps: {methods: {name: Float32Array}, scores, valueNorms}
  query: 0, method: "attention", layer: 0, head: -1, step: 0,
};

// ---------- small helpers ----------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function f32(b64) {
  const s = atob(b64);
  const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return new Float32Array(u.buffer);
}
const fmt = (v, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : String(v));
function showError(msg) { $("error").textContent = msg || ""; }
async function getJson(url, options) {
  const res = await fetch(url, options);
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}
function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this image"));
    img.src = src;
  });
}

// Turbo colour map (Mikhailov 2019), polynomial fit.
function turbo(t) {
  t = Math.min(1, Math.max(0, t));
  const r = 0.13572138 + t * (4.6153926 + t * (-42.66032258 + t * (132.13108234 + t * (-152.94239396 + t * 59.28637943))));
  const g = 0.09140261 + t * (2.19418839 + t * (4.84296658 + t * (-14.18503333 + t * (4.27729857 + t * 2.82956604))));
  const b = 0.1066733 + t * (12.64194608 + t * (-60.58204836 + t * (110.36276771 + t * (-89.90310912 + t * 27.34824973))));
  return [r, g, b].map((x) => Math.round(255 * Math.min(1, Math.max(0, x))));
}

// ---------- scenes ----------
async function init() {
  try {
    const h = await getJson("/api/health");
    $("status").textContent = `model ${h.model} on ${h.device} · commands up to ${h.max_command_bytes} bytes · uploads up to ${(h.max_upload_bytes / 1048576).toFixed(0)} MiB`;
    const list = await getJson("/api/scenes");
    for (const s of list.scenes) $("example").append(el("option", { value: s.name }, s.name + (s.has_truth ? "" : " (no ground truth)")));
    for (const s of list.splits) $("split").append(el("option", { value: s.name, "data-seed": s.first_seed }, s.name));
    $("seed").value = list.splits.length ? list.splits[0].first_seed : 0;
    $("split").addEventListener("change", () => { $("seed").value = $("split").selectedOptions[0].dataset.seed; });
    $("example").addEventListener("change", () => pickScene({ name: $("example").value }));
    $("generate").addEventListener("click", () => pickScene({ split: $("split").value, seed: $("seed").value }));
    $("upload").addEventListener("change", pickUpload);
    $("ask").addEventListener("submit", (e) => { e.preventDefault(); predict(); });
    for (const id of ["method", "layer", "head"]) $(id).addEventListener("change", readControls);
    for (const b of document.querySelectorAll("button.step")) b.addEventListener("click", () => { state.step = Number(b.dataset.step); renderSteps(); });
    $("view").addEventListener("mousemove", hover);
    $("view").addEventListener("mouseleave", () => { $("hover").hidden = true; });
    if (list.scenes.length) await pickScene({ name: list.scenes[0].name });
  } catch (e) { showError(e.message); }
}

async function pickScene(ref) {
  showError("");
  try {
    const q = ref.name ? `name=${encodeURIComponent(ref.name)}` : `split=${encodeURIComponent(ref.split)}&seed=${encodeURIComponent(ref.seed)}`;
    const s = await getJson(`/api/scene?${q}`);
    state.scene = ref;
    await setPicture(s.image, s.label + (s.has_truth ? ` · ${s.objects.length} objects with ground truth` : " · no ground truth"));
    const box = $("suggestions");
    box.replaceChildren();
    for (const c of s.commands.slice(0, 8)) box.append(el("button", { type: "button", class: "chip", onclick: () => { $("cmd").value = c.text; predict(); } }, c.text));
  } catch (e) { showError(e.message); }
}

async function pickUpload() {
  const file = $("upload").files[0];
  if (!file) return;
  showError("");
  state.scene = { file };
  try { await setPicture(URL.createObjectURL(file), `upload: ${file.name} (no ground truth)`); } catch (e) { showError(e.message); }
}

async function setPicture(src, label) {
  state.image = await loadImage(src);
  state.result = null; state.maps = null;
  $("scene-label").textContent = label;
  for (const id of ["words", "actions", "steps", "wordobj", "masks", "grounding"]) $(id).replaceChildren();
  $("answer").textContent = "";
  draw();
}

// ---------- prediction ----------
async function predict() {
  const cmd = $("cmd").value.trim();
  if (!cmd) { showError("type a command first"); return; }
  if (!state.scene) { showError("choose a scene first"); return; }
  showError("");
  const form = new FormData();
  form.append("cmd", cmd);
  const s = state.scene;
  if (s.file) form.append("image", s.file);
  else if (s.name) form.append("scene", s.name);
  else { form.append("split", s.split); form.append("seed", s.seed); }
  $("predict").disabled = true;
  try {
    const r = await getJson("/api/predict", { method: "POST", body: form });
    state.result = r;
    state.maps = {
      methods: Object.fromEntries(r.maps.methods.map((m) => [m.name, f32(m.data)])),
      scores: f32(r.maps.scores),
      valueNorms: f32(r.maps.value_norms),
    };
    const firstAction = r.maps.queries.findIndex((q) => q.kind === "action");
    state.query = firstAction >= 0 ? firstAction : 0;
    fillControls();
    renderTokens(); renderSteps(); renderTables(); draw();
  } catch (e) { showError(e.message); }
  $("predict").disabled = false;
}

function fillControls() {
  const m = state.result.maps;
  const keep = (id, options, value) => {
    const sel = $(id);
    sel.replaceChildren(...options.map(([v, t]) => el("option", { value: v }, t)));
    sel.value = options.some(([v]) => String(v) === String(value)) ? value : options[options.length - 1][0];
  };
  keep("method", m.methods.map((x) => [x.name, x.name]), state.method);
  keep("layer", [...Array(m.layers).keys()].map((l) => [l, `fusion ${l + 1} of ${m.layers}`]), m.layers - 1);
  keep("head", [[-1, "mean of heads"], ...[...Array(m.heads).keys()].map((h) => [h, `head ${h + 1}`])], state.head);
  readControls();
}

function readControls() {
  if (!state.result) return;
  state.method = $("method").value;
  state.layer = Number($("layer").value);
  state.head = Number($("head").value);
  const m = state.result.maps.methods.find((x) => x.name === state.method);
  $("map-about").textContent = m ? m.about : "";
  renderSteps(); draw();
}

// One map over the patches: method, layer, head (-1: mean), query.
function mapOf(data, layer, head, query) {
  const m = state.result.maps, n = m.grid * m.grid, q = m.queries.length;
  const row = (h) => data.subarray(((layer * m.heads + h) * q + query) * n, ((layer * m.heads + h) * q + query + 1) * n);
  if (head >= 0) return Array.from(row(head));
  const out = new Array(n).fill(0);
  for (let h = 0; h < m.heads; h++) row(h).forEach((v, i) => { out[i] += v / m.heads; });
  return out;
}
const currentMap = () => mapOf(state.maps.methods[state.method], state.layer, state.head, state.query);
const currentScores = () => mapOf(state.maps.scores, state.layer, state.head, state.query);

// ---------- drawing ----------
function geometry() {
  const img = state.image;
  const k = Math.min(MAX_SIDE / img.naturalWidth, MAX_SIDE / img.naturalHeight, 4);
  return { k, w: Math.round(img.naturalWidth * k), h: Math.round(img.naturalHeight * k) };
}

function draw() {
  const c = $("view");
  if (!state.image) return;
  const { k, w, h } = geometry();
  c.width = w; c.height = h;
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(state.image, 0, 0, w, h);
  if (!state.result) return;
  const r = state.result, lb = r.image.letterbox, ps = r.model.patch_size, g = r.maps.grid;
  const values = currentMap();
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  ctx.globalAlpha = 0.5;
  for (let p = 0; p < g * g; p++) {
    const [cr, cg, cb] = turbo((values[p] - lo) / span);
    const x0 = (((p % g) * ps - lb.pad_x) / lb.scale) * k, y0 = ((Math.floor(p / g) * ps - lb.pad_y) / lb.scale) * k;
    const side = (ps / lb.scale) * k;
    const x = Math.max(0, x0), y = Math.max(0, y0);
    const ww = Math.min(w, x0 + side) - x, hh = Math.min(h, y0 + side) - y;
    if (ww <= 0 || hh <= 0) continue;
    ctx.fillStyle = `rgb(${cr},${cg},${cb})`;
    ctx.fillRect(x, y, ww, hh);
  }
  ctx.globalAlpha = 1;
  const wps = r.action.waypoints;
  ctx.lineWidth = 2; ctx.strokeStyle = "#fff";
  ctx.beginPath();
  wps.forEach((p, i) => (i ? ctx.lineTo(p.pixel[0] * k, p.pixel[1] * k) : ctx.moveTo(p.pixel[0] * k, p.pixel[1] * k)));
  ctx.stroke();
  wps.forEach((p, i) => {
    const x = p.pixel[0] * k, y = p.pixel[1] * k;
    ctx.beginPath(); ctx.arc(x, y, 8, 0, 2 * Math.PI);
    ctx.fillStyle = p.gripper === "close" ? "#e3342f" : "#ffffff";
    ctx.fill(); ctx.strokeStyle = "#111"; ctx.stroke();
    ctx.fillStyle = "#111"; ctx.font = "bold 11px vla-sans, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(String(i + 1), x, y);
  });
}

function patchAt(ev) {
  const c = $("view"), rect = c.getBoundingClientRect(), r = state.result;
  const { k } = geometry(), lb = r.image.letterbox, ps = r.model.patch_size, g = r.maps.grid;
  const x = ((ev.clientX - rect.left) * (c.width / rect.width)) / k, y = ((ev.clientY - rect.top) * (c.height / rect.height)) / k;
  const col = Math.floor((x * lb.scale + lb.pad_x) / ps), row = Math.floor((y * lb.scale + lb.pad_y) / ps);
  if (col < 0 || row < 0 || col >= g || row >= g) return null;
  return { p: row * g + col, row, col, cx: ev.clientX - rect.left, cy: ev.clientY - rect.top };
}

function hover(ev) {
  const box = $("hover");
  if (!state.result) { box.hidden = true; return; }
  const at = patchAt(ev);
  if (!at) { box.hidden = true; return; }
  const on = state.result.maps.patch_objects ? state.result.maps.patch_objects[at.p] : "unknown (no ground truth)";
  const headWord = state.head < 0 ? "mean of heads" : `head ${state.head + 1}`;
  box.textContent = `patch ${at.p} (row ${at.row}, col ${at.col}) · raw score ${fmt(currentScores()[at.p])} · ${state.method} ${fmt(currentMap()[at.p], 4)} (${headWord}) · on ${on}`;
  box.style.left = `${at.cx + 12}px`; box.style.top = `${at.cy + 12}px`;
  box.hidden = false;
}

// ---------- tokens ----------
function renderTokens() {
  const r = state.result, qs = r.maps.queries;
  const words = $("words"), actions = $("actions");
  words.replaceChildren(); actions.replaceChildren();
  qs.forEach((q, i) => {
    const chip = el("button", { type: "button", class: "chip" + (i === state.query ? " on" : ""), "data-query": i, onclick: () => selectQuery(i) });
    if (q.kind === "word") {
      chip.append(q.label);
      words.append(chip);
    } else {
      const t = r.action.tokens[q.index];
      chip.append(`${q.label}  p=${fmt(t ? t.prob : NaN)}`);
      if (t) chip.append(el("small", {}, t.top.map((a) => `${a.text} ${fmt(a.prob)}`).join(" · ")));
      chip.append(el("small", {}, `query: ${q.from}`));
      actions.append(chip);
    }
  });
  const a = r.action;
  $("answer").textContent = a.message ? `The model refuses: "${a.message}"` : (a.error ? `not a valid action: ${a.error}` : "");
}

function selectQuery(i) {
  state.query = i;
  for (const c of document.querySelectorAll("[data-query]")) c.classList.toggle("on", Number(c.dataset.query) === i);
  renderSteps(); draw();
}

// ---------- Score -> Align -> Attend ----------
function renderSteps() {
  const box = $("steps");
  for (const b of document.querySelectorAll("button.step")) b.classList.toggle("on", Number(b.dataset.step) === state.step);
  if (!state.result) { box.replaceChildren(); return; }
  const m = state.result.maps, n = m.grid * m.grid, q = m.queries[state.query];
  // The softmax is per head: with the mean selected, follow the sharpest head (as `explain` does).
  let h = state.head;
  let why = `head ${h + 1}`;
  if (h < 0) {
    const att = state.maps.methods.attention;
    let best = 0, peak = -Infinity;
    for (let k = 0; k < m.heads; k++) { const v = Math.max(...mapOf(att, state.layer, k, state.query)); if (v > peak) { peak = v; best = k; } }
    h = best; why = `head ${h + 1}, the sharpest (pick a head above to follow another)`;
  }
  $("step-query").textContent = `query "${q.from}" → ${q.label}, fusion layer ${state.layer + 1}, ${why}`;
  const e = mapOf(state.maps.scores, state.layer, h, state.query);
  const used = mapOf(state.maps.methods.attention, state.layer, h, state.query);
  const top = Math.max(...e);
  const ex = e.map((v) => Math.exp(v - top)), z = ex.reduce((s, v) => s + v, 0);
  const alpha = ex.map((v) => v / z);
  const vn = state.maps.valueNorms.subarray((state.layer * m.heads + h) * n, (state.layer * m.heads + h + 1) * n);
  const contrib = alpha.map((a, i) => a * vn[i]), total = contrib.reduce((s, v) => s + v, 0) || 1;
  const on = (p) => (m.patch_objects ? m.patch_objects[p] : "—");
  const table = (order, cols) => el("table", {},
    el("tr", {}, ...["patch", "row, col", ...cols.map((c) => c[0]), "on"].map((t) => el("th", {}, t))),
    ...order.slice(0, 5).map((p) => el("tr", {}, el("td", {}, p), el("td", {}, `${Math.floor(p / m.grid)}, ${p % m.grid}`), ...cols.map((c) => el("td", {}, c[1](p))), el("td", { class: "tok" }, on(p)))));
  const by = (xs) => [...xs.keys()].sort((a, b) => xs[b] - xs[a]);
  const mean = e.reduce((s, v) => s + v, 0) / n;
  const ctxNorm = m.context_norms[(state.layer * m.heads + h) * m.queries.length + state.query];
  const steps = [
    [`Score: e_i = q·k_i/√d for each of the ${n} patches (plus the position term the query chose). min ${fmt(Math.min(...e))}, mean ${fmt(mean)}, max ${fmt(top)}. The largest:`,
      table(by(e), [["score e", (p) => fmt(e[p])], ["weight α", (p) => fmt(alpha[p], 4)]])],
    [`Align: α = softmax(e), computed here from the scores above. Σα = ${fmt(alpha.reduce((s, v) => s + v, 0), 6)}; largest gap to the α the model used: ${alpha.reduce((g, a, i) => Math.max(g, Math.abs(a - used[i])), 0).toExponential(2)}.`,
      table(by(alpha), [["weight α", (p) => fmt(alpha[p], 4)], ["score e", (p) => fmt(e[p])]])],
    [`Attend: c = Σ α_i v_i, ‖c‖ = ${fmt(ctxNorm)}. A patch contributes α_i‖v_i‖; the largest contributions:`,
      table(by(contrib), [["α_i‖v_i‖", (p) => fmt(contrib[p], 4)], ["share", (p) => `${(100 * contrib[p] / total).toFixed(1)}%`], ["α", (p) => fmt(alpha[p], 4)], ["‖v_i‖", (p) => fmt(vn[p])]])],
  ];
  const [text, t] = steps[state.step];
  box.replaceChildren(el("p", {}, text), t);
}

// ---------- tables ----------
function maskTable(tokens, mask) {
  return el("table", {},
    el("tr", {}, el("th", { class: "tok" }, "query \\ key"), ...tokens.map((t) => el("th", {}, t))),
    ...mask.map((row, i) => el("tr", {}, el("th", { class: "tok" }, tokens[i]), ...row.map((ok) => el("td", { class: ok ? "yes" : "no" }, ok ? "○" : "×")))));
}

function renderTables() {
  const r = state.result, x = r.explain;
  const wo = $("wordobj");
  if (x.objects.length) {
    wo.replaceChildren(el("p", { class: "note" }, "Mean attention per patch on each object (last fusion layer, heads averaged), by word query."),
      el("table", {}, el("tr", {}, el("th", { class: "tok" }, "word"), ...x.objects.map((o) => el("th", {}, o))),
        ...x.word_object.map(([w, cells]) => el("tr", {}, el("td", { class: "tok" }, w), ...cells.map((v) => el("td", {}, fmt(v, 4)))))));
  } else {
    wo.replaceChildren(el("p", { class: "note" }, "This picture has no ground truth, so there are no objects to tabulate: choose an example or a drawn scene."));
  }
  $("masks").replaceChildren(
    el("p", { class: "note" }, "Text decoder (causal): a token sees itself and the tokens before it."),
    maskTable(x.mask_tokens, x.causal_mask),
    el("p", { class: "note" }, x.prefix_lm ? "Fusion head (prefix LM): the words see each other both ways; the action tokens stay causal." : "Fusion head (causal)."),
    maskTable(x.fusion_mask_tokens, x.fusion_mask));
  const g = r.grounding, gb = $("grounding");
  if (!g) { gb.replaceChildren(el("p", { class: "note" }, "No ground truth for this picture.")); return; }
  const pct = (v) => (v == null ? "—" : `${(100 * v).toFixed(1)}%`);
  const mark = (b) => (b == null ? "—" : b ? "✓" : "✗");
  const rows = [
    ["target", g.target ? `#${g.target.id} ${g.target.name} (${g.target.found_by})` : "none: no single object fits"],
    ["the scene calls for", g.expected || "—"], ["the model said", r.action.outcome],
    ["pointing game", `${mark(g.pointing_hit)} (the peak lies on ${g.peak_on})`],
    ["attention mass on the target", `${pct(g.attention_mass)} (uniform: ${pct(g.uniform_mass)})`],
    ["waypoint 1 lies on", `${g.waypoint_on} ${mark(g.waypoint_on_target)}`],
  ];
  gb.replaceChildren(el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", { class: "tok" }, k), el("td", { class: "tok" }, v)))));
}

init();
