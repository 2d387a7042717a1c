// aekit latent explorer: plain JS, no build step, no network beyond this server. What it shows follows
// /api/info's `features` (each null when the model has it, else the reason it has not): sliders for a flat
// code, a code-grid editor for a discrete one, random samples when there is a prior, a label switch and the
// code decoded under every class for a conditional one.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const SHOWN_DIMS = 32; // sliders shown at once; the rest sit behind "more dimensions"

let info = null;       // /api/info
let points = null;     // /api/map
let z = [];            // the sliders' code
let sliders = [];      // [{input, output}]
const marks = { current: null, upload: null, path: null, a: null, b: null };
let sampleSeed = 1;
let grid = null;       // discrete models: the edited (h, w) index grid, and the one it started from
let gridBase = null;
let selected = null;   // [row, col] of the grid cell being edited

const has = (feature) => info.features[feature] === null;
const copyGrid = (g) => g.map((row) => row.slice());

function setStatus(text, isError = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

async function api(path, options) {
  const r = await fetch(path, options);
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).detail || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}
const postJSON = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// At most one request in flight; while it runs, newer values replace each other and only the latest is sent.
let pumping = 0; // coalescers with work under way (window.aekitBusy() lets tests wait for quiet)
window.aekitBusy = () => pumping;
function coalesced(fn) {
  let pending = null, busy = false;
  async function pump() {
    busy = true;
    pumping++;
    while (pending !== null) {
      const value = pending;
      pending = null;
      try { await fn(value); } catch (e) { setStatus(e.message, true); }
    }
    busy = false;
    pumping--;
  }
  return (value) => { pending = value; if (!busy) pump(); };
}

async function drawBlob(canvas, blob) {
  const bmp = await createImageBitmap(blob);
  if (canvas.width !== bmp.width || canvas.height !== bmp.height) { canvas.width = bmp.width; canvas.height = bmp.height; }
  canvas.getContext("2d").drawImage(bmp, 0, 0);
  bmp.close();
  canvas.dataset.version = String(Number(canvas.dataset.version) + 1); // tests wait on this
}

const colour = (k) => (k < 0 ? "#999" : k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.5) % 360} 65% 45%)`);

// ---------------------------------------------------------------------------------------- decoder
// a conditional model: the class the decoder is told ("" = no label), and the row of every class
const chosenLabel = () => { const v = $("#label-select").value; return v === "" ? null : Number(v); };
const decodeToCanvas = coalesced(async (code) => {
  const body = { z: code };
  if (has("conditional") && chosenLabel() !== null) body.label = chosenLabel();
  const r = await postJSON("/api/decode", body);
  await drawBlob($("#decoded"), await r.blob());
  if (has("conditional")) stylesRow(code);
});
const stylesRow = coalesced(async (code) => {
  const out = await (await postJSON("/api/styles", { z: code })).json();
  const row = $("#styles");
  row.replaceChildren(...out.classes.map((c) => {
    const fig = document.createElement("figure"), cap = document.createElement("figcaption");
    cap.textContent = c.name;
    fig.append(image(c.image, `class ${c.name}`), cap);
    return fig;
  }));
  row.dataset.version = String(Number(row.dataset.version) + 1); // tests wait on this
});

function buildLabelPanel() {
  const select = $("#label-select");
  info.class_names.forEach((name, k) => select.append(new Option(name, String(k))));
  select.addEventListener("change", () => decodeToCanvas(z.slice()));
  $("#label-panel").hidden = false;
}

function buildSliders() {
  if (!has("flat")) { // a spatial code: thousands of numbers, no sliders (morph, arithmetic and the map still work)
    $("#sliders-note").textContent = `no sliders: ${info.features.flat}`;
    $("#sliders-note").hidden = false;
    $("#decoded-caption").textContent = has("discrete") ? "decoded from the code grid" : "decoded from the code";
    return;
  }
  const d = info.code_size, lo = info.ranges.lo, hi = info.ranges.hi;
  for (let i = 0; i < d; i++) {
    const parent = i < SHOWN_DIMS ? $("#sliders") : $("#more-sliders");
    const label = document.createElement("label");
    label.textContent = `z${i}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: lo[i], max: hi[i], step: (hi[i] - lo[i]) / 400, value: 0 });
    input.id = `z${i}`;
    label.htmlFor = input.id;
    const output = document.createElement("output");
    input.addEventListener("input", () => {
      z[i] = Number(input.value);
      output.textContent = z[i].toFixed(2);
      decodeToCanvas(z.slice());
      if (info.map_is_latent) { marks.current = z.slice(); drawMap(); }
    });
    parent.append(label, input, output);
    sliders.push({ input, output });
  }
  $("#more").hidden = d <= SHOWN_DIMS;
}

function setCode(code, mapXY = null) {
  z = code.map(Number); // flattened: the server reshapes it to the model's code shape
  sliders.forEach(({ input, output }, i) => { input.value = z[i]; output.textContent = z[i].toFixed(2); });
  decodeToCanvas(z.slice());
  marks.current = info.map_is_latent ? z.slice(0, 2) : mapXY;
  drawMap();
}

async function resetToTest(i) {
  const item = await (await api(`/api/test/${i}`)).json();
  $("#original").src = `/api/test/${i}/image.png`;
  $("#original-caption").textContent = `test #${i}: ${item.label_name}`;
  showCode(item);
}

// a code from the server: a discrete model's index grid goes to the grid editor, any other code to the sliders
function showCode(item) {
  if (has("discrete") && item.indices) {
    setGrid(item.indices, true);
    marks.current = item.xy;
    drawMap();
  } else {
    setCode(item.z, item.xy);
  }
}

async function randomSample() {
  const seed = sampleSeed++;
  const out = await (await api(`/api/sample?seed=${seed}`)).json();
  $("#original").src = out.image;
  $("#original-caption").textContent = `sample from the prior (seed ${seed})`;
  showCode(out);
}

// ------------------------------------------------------------------------------------ code grid
const decodeGrid = coalesced(async (g) => {
  const blob = await (await postJSON("/api/decode_indices", { indices: g })).blob();
  await drawBlob($("#grid-decoded"), blob);
  await drawBlob($("#decoded"), blob);
});

function setGrid(g, base = false) {
  grid = copyGrid(g);
  if (base) gridBase = copyGrid(g);
  if (selected !== null) $("#grid-entry").value = grid[selected[0]][selected[1]];
  renderGrid();
  decodeGrid(copyGrid(grid));
}

function renderGrid() {
  const box = $("#grid-cells"), [h, w] = info.codebook.grid;
  if (box.children.length !== h * w) {
    box.style.gridTemplateColumns = `repeat(${w}, 1fr)`;
    box.style.gridTemplateRows = `repeat(${h}, 1fr)`;
    const cells = [];
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const b = document.createElement("button");
        Object.assign(b.dataset, { r, c });
        b.setAttribute("role", "gridcell");
        b.addEventListener("click", () => selectCell(r, c));
        cells.push(b);
      }
    }
    box.replaceChildren(...cells);
  }
  for (const b of box.children) {
    const r = Number(b.dataset.r), c = Number(b.dataset.c);
    b.textContent = String(grid[r][c]);
    b.title = `cell ${r},${c}: entry ${grid[r][c]}`;
    b.classList.toggle("changed", gridBase !== null && grid[r][c] !== gridBase[r][c]);
    b.classList.toggle("selected", selected !== null && selected[0] === r && selected[1] === c);
  }
}

function selectCell(r, c) {
  selected = [r, c];
  $("#grid-cell").textContent = `${r},${c}`;
  $("#grid-entry").value = grid[r][c];
  renderGrid();
}

function setEntry(value) {
  if (selected === null) throw new Error("click a cell of the code grid first");
  const k = Number(value), size = info.codebook.size;
  if (!Number.isInteger(k) || k < 0 || k >= size) throw new Error(`entry must be a whole number 0..${size - 1}`);
  $("#grid-entry").value = k;
  grid[selected[0]][selected[1]] = k;
  renderGrid();
  decodeGrid(copyGrid(grid));
}

function buildGridPanel() {
  const cb = info.codebook;
  $("#grid-panel").hidden = false;
  $("#grid-kind").textContent = `(${cb.grid[0]}×${cb.grid[1]} cells, ${cb.size} codebook entries, ` +
    `usage perplexity ${cb.perplexity.toFixed(1)})`;
  $("#grid-entry").max = cb.size - 1;
  $("#grid-top").replaceChildren(...cb.top.map((k) => {
    const b = document.createElement("button");
    b.textContent = String(k);
    b.title = `entry ${k}: used by ${cb.counts[k]} test-set cells`;
    b.addEventListener("click", guard(async () => setEntry(k)));
    return b;
  }));
  $("#grid-set").addEventListener("click", guard(async () => setEntry($("#grid-entry").value)));
  $("#grid-entry").addEventListener("change", guard(async () => setEntry($("#grid-entry").value)));
  $("#grid-undo").addEventListener("click", guard(async () => { if (gridBase) setGrid(gridBase); }));
}

// -------------------------------------------------------------------------------------------- map
const map = { canvas: null, base: null, bounds: null, pad: 16 };

function toCanvas(x, y) {
  const [x0, x1, y0, y1] = map.bounds, w = map.canvas.width - 2 * map.pad, h = map.canvas.height - 2 * map.pad;
  return [map.pad + ((x - x0) / (x1 - x0 || 1)) * w, map.pad + (1 - (y - y0) / (y1 - y0 || 1)) * h];
}
function fromCanvas(px, py) {
  const [x0, x1, y0, y1] = map.bounds, w = map.canvas.width - 2 * map.pad, h = map.canvas.height - 2 * map.pad;
  return [x0 + ((px - map.pad) / w) * (x1 - x0), y0 + (1 - (py - map.pad) / h) * (y1 - y0)];
}

function buildMap() {
  map.canvas = $("#map");
  const [x0, x1, y0, y1] = points.bounds, mx = (x1 - x0) * 0.04, my = (y1 - y0) * 0.04;
  map.bounds = [x0 - mx, x1 + mx, y0 - my, y1 + my];
  map.base = document.createElement("canvas");
  map.base.width = map.canvas.width;
  map.base.height = map.canvas.height;
  const ctx = map.base.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, map.base.width, map.base.height);
  ctx.globalAlpha = 0.65;
  for (let i = 0; i < points.x.length; i++) {
    const [px, py] = toCanvas(points.x[i], points.y[i]);
    ctx.fillStyle = colour(points.label[i]);
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  const legend = $("#legend");
  const present = new Set(points.label);
  info.class_names.forEach((name, k) => {
    if (!present.has(k)) return;
    const li = document.createElement("li");
    li.innerHTML = `<i style="background:${colour(k)}"></i>`;
    li.append(name);
    legend.append(li);
  });
  drawMap();
}

function cross(ctx, xy, colourName, size = 7) {
  if (!xy) return;
  const [px, py] = toCanvas(xy[0], xy[1]);
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 4;
  ctx.beginPath(); ctx.moveTo(px - size, py); ctx.lineTo(px + size, py); ctx.moveTo(px, py - size); ctx.lineTo(px, py + size); ctx.stroke();
  ctx.strokeStyle = colourName; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(px - size, py); ctx.lineTo(px + size, py); ctx.moveTo(px, py - size); ctx.lineTo(px, py + size); ctx.stroke();
}

function drawMap() {
  if (!map.base) return;
  const ctx = map.canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(map.base, 0, 0);
  if (marks.path) {
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5; ctx.beginPath();
    marks.path.forEach((p, i) => { const [px, py] = toCanvas(p[0], p[1]); i ? ctx.lineTo(px, py) : ctx.moveTo(px, py); });
    ctx.stroke();
  }
  cross(ctx, marks.a, "#000"); cross(ctx, marks.b, "#555");
  cross(ctx, marks.upload, "#d00", 9);
  cross(ctx, marks.current, "#000", 10);
}

function nearest(x, y) {
  let best = -1, bestD = Infinity;
  for (let i = 0; i < points.x.length; i++) {
    const d = (points.x[i] - x) ** 2 + (points.y[i] - y) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  }
  return best;
}

function eventXY(ev) {
  const r = map.canvas.getBoundingClientRect();
  return fromCanvas(((ev.clientX - r.left) / r.width) * map.canvas.width, ((ev.clientY - r.top) / r.height) * map.canvas.height);
}

// 2-D codes: the map IS the latent plane, so hover decodes the exact point (gaps show as blurry/odd images);
// wider codes: hover shows the reconstruction of the nearest test image.
const hoverDecode = coalesced(async ([x, y]) => {
  const preview = $("#preview");
  if (info.map_is_latent) {
    const r = await postJSON("/api/decode", { z: [x, y] });
    await drawBlob(preview, await r.blob());
    $("#hover-info").textContent = `z = (${x.toFixed(2)}, ${y.toFixed(2)})`;
  } else {
    const i = nearest(x, y);  // a point of the map; points.id[i] is its test image's number (as in aekit plot)
    const r = await api(`/api/test/${points.id[i]}/recon.png`);
    await drawBlob(preview, await r.blob());
    $("#hover-info").textContent = `test #${points.id[i]} (${info.class_names[points.label[i]] ?? "?"}), reconstructed`;
  }
});

async function mapClick(ev) {
  const [x, y] = eventXY(ev);
  const mode = document.querySelector("input[name=click]:checked").value;
  const i = nearest(x, y);
  if (mode === "a" || mode === "b") {
    $(`#morph-${mode}`).value = points.id[i];
    marks[mode] = [points.x[i], points.y[i]];
    drawMap();
    return;
  }
  if (info.map_is_latent) {
    setCode([x, y]);
  } else {
    await resetToTest(points.id[i]);
  }
}

// ------------------------------------------------------------------------------ morph, arithmetic
function image(src, title) {
  const img = document.createElement("img");
  img.src = src;
  if (title) img.title = img.alt = title;
  return img;
}

async function runMorph() {
  const body = { a: Number($("#morph-a").value), b: Number($("#morph-b").value),
                 steps: Number($("#morph-steps").value), mode: $("#morph-mode").value };
  const out = await (await postJSON("/api/morph", body)).json();
  const strip = $("#morph-strip");
  strip.replaceChildren(...out.frames.map((src, k) => image(src, `step ${k + 1}`)));
  strip.dataset.frames = String(out.frames.length);
  marks.path = out.xy;
  marks.a = out.xy[0]; marks.b = out.xy[out.xy.length - 1];
  drawMap();
}

function operand(text) {
  const t = text.trim();
  return /^\d+$/.test(t) ? Number(t) : t;
}

async function runArithmetic() {
  const body = { a: operand($("#arith-a").value), b: operand($("#arith-b").value), c: operand($("#arith-c").value) };
  const out = await (await postJSON("/api/arithmetic", body)).json();
  const [a, b, c] = out.inputs, op = (s) => Object.assign(document.createElement("span"), { className: "op", textContent: s });
  $("#arith-out").replaceChildren(image(a.image, a.caption), op("−"), image(b.image, b.caption), op("+"),
                                  image(c.image, c.caption), op("="), image(out.result.image, "result"));
  if (has("discrete")) { // the result lives before quantisation: shown in the strip and on the map
    marks.current = out.result.xy;
    drawMap();
  } else {
    setCode(out.result.z, out.result.xy);
  }
}

// ----------------------------------------------------------------------------------------- upload
async function upload(file) {
  if (!file) return;
  if (file.size > info.limits.max_upload_bytes) { setStatus(`${file.name} is over the 2 MB limit`, true); return; }
  const form = new FormData();
  form.append("file", file);
  form.append("invert", $("#upload-invert").checked ? "true" : "false");
  const out = await (await api("/api/upload", { method: "POST", body: form })).json();
  $("#upload-out").replaceChildren(image(out.input, "input, converted like the training data"),
                                   Object.assign(document.createElement("span"), { className: "op", textContent: "→" }),
                                   image(out.recon, "reconstruction"));
  $("#upload-info").textContent = `reconstruction error ${out.error.toFixed(4)} (MSE per pixel): higher than ` +
    `${out.percentile.toFixed(1)}% of the test images (test median ${info.error.median.toFixed(4)})`;
  marks.upload = out.xy;
  showCode(out);
}

// ------------------------------------------------------------------------------------------- start
function guard(fn) {
  return async (...args) => {
    try { setStatus("…"); await fn(...args); setStatus(""); } catch (e) { setStatus(e.message, true); }
  };
}

async function start() {
  info = await (await api("/api/info")).json();
  points = await (await api("/api/map")).json();
  const [c, h, w] = info.shape, code = info.code_shape.join("×");
  const book = info.codebook ? `, codebook of ${info.codebook.size}` : "";
  $("#run-info").textContent = `${info.run}: ${info.model}, code ${code}${book}, images ${c}×${h}×${w}`;
  $("#map-kind").textContent = info.map_is_latent ? "(the 2-D code itself)" : `(${info.projection} of the ${info.code_size}-number codes)`;
  // test images go by their number in the test split (the one index space of aekit plot and the report); the
  // map may show a seeded subset of them, so the defaults are the first numbers on it
  $("#reset-index").max = $("#morph-a").max = $("#morph-b").max = info.n_test - 1;
  [["#reset-index", 0], ["#morph-a", 0], ["#morph-b", 1], ["#arith-a", 0], ["#arith-b", 1], ["#arith-c", 2]].forEach(
    ([sel, k]) => { if (k < points.id.length) $(sel).value = points.id[k]; });
  if (!info.has_prior) {
    $("#random").disabled = true;
    $("#random").title = info.sample_note;
    $("#sample-note").textContent = info.sample_note;
    $("#sample-note").hidden = false;
  }
  buildSliders();
  if (has("discrete")) buildGridPanel();
  if (info.panels.styles === null) buildLabelPanel();
  buildMap();

  $("#reset").addEventListener("click", guard(() => resetToTest(Number($("#reset-index").value))));
  $("#random").addEventListener("click", guard(randomSample));
  map.canvas.addEventListener("mousemove", (ev) => hoverDecode(eventXY(ev)));
  map.canvas.addEventListener("click", guard(mapClick));
  $("#morph-steps").addEventListener("input", () => { $("#morph-steps-out").textContent = $("#morph-steps").value; });
  $("#morph-run").addEventListener("click", guard(runMorph));
  $("#arith-run").addEventListener("click", guard(runArithmetic));
  const drop = $("#drop");
  $("#upload-file").addEventListener("change", guard(() => upload($("#upload-file").files[0])));
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guard(async (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    await upload(ev.dataTransfer.files[0]);
  }));
  await resetToTest(0);
  document.body.dataset.ready = "1";
}

start().catch((e) => setStatus(e.message, true));
