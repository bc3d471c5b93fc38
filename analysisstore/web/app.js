// analysisstore browser view: a list of analyses and one page per analysis, over the v1 API.
"use strict";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const TOKEN_KEY = "analysisstore.token";  // sessionStorage: kept while the tab is open
let staleAfter = 24 * 3600;
let viewGen = 0;  // bumped on every navigation: a slow answer for a page no longer shown is dropped
let analysisState = { uid: null, signature: null };  // the analysis page shown, for live refreshes

// ---- API ----------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      message = `${body.error.status} ${body.error.type}: ${body.error.message} (request ${body.error.request_id})`;
    } catch (_) { /* not our JSON error body */ }
    if (response.status === 401) message += " — enter a token above.";
    throw new Error(message);
  }
  return options.raw ? response : parseJson(await response.text());
}

// NaN and ±Infinity arrive tagged, {"$numberDouble": "NaN"} (docs/json-numbers.md): turn them back into
// numbers. The reviver only runs when the text holds a tag, so ordinary pages parse at full speed.
const NONFINITE = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

function parseJson(text) {
  if (!text.includes('"$numberDouble"')) return JSON.parse(text);
  return JSON.parse(text, (_, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === "$numberDouble" && v.$numberDouble in NONFINITE) return NONFINITE[v.$numberDouble];
    }
    return v;
  });
}

// JSON.stringify for display: NaN/Infinity shown by name (plain stringify would print null).
function showJson(value, indent) {
  return JSON.stringify(value, (_, v) => (typeof v === "number" && !isFinite(v) ? String(v) : v), indent);
}

function showError(error) {
  errorBox.textContent = error.message || String(error);
  errorBox.hidden = false;
}

function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  return search.toString();
}

// ---- small DOM helpers (text is always set as text, never as HTML) -------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleString() : ""; }
function badge(status) { return el("span", { class: "status " + status, "data-status": status }, status); }
function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

// The annotations a header or tail may carry after the fact (invalid, tags, notes), shown next to the status:
// a plain "success" badge alone would hide that someone flagged the result.
function isInvalid(...docs) { return docs.some((d) => d && d.invalid === true); }
function tagsOf(...docs) { return [...new Set(docs.flatMap((d) => (d && Array.isArray(d.tags) ? d.tags : [])))]; }
function notesOf(...docs) { return docs.map((d) => d && d.notes).filter((n) => typeof n === "string" && n); }
function flags(...docs) {
  const out = [];
  if (isInvalid(...docs)) out.push(el("span", { class: "flag invalid", "data-flag": "invalid" }, "invalid"));
  for (const tag of tagsOf(...docs)) out.push(el("span", { class: "tag", "data-tag": tag }, tag));
  const notes = notesOf(...docs);
  if (notes.length) out.push(el("span", { class: "flag notes", "data-flag": "notes", title: notes.join("\n") }, "notes"));
  return out;
}
function link(uid) { return el("a", { href: "#/analysis/" + encodeURIComponent(uid), class: "analysis-link" }, uid); }

function statusOf(header, tail) {
  if (tail) return tail.exit_status;
  return header.time <= Date.now() / 1000 - staleAfter ? "stale" : "running";
}

async function tailsFor(uids) {
  if (!uids.length) return {};
  const body = await api("/api/v1/analysis_tail/search", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ filter: { analysis_header: { $in: uids } }, limit: uids.length }),
  });
  return Object.fromEntries(body.items.map((t) => [t.analysis_header, t]));
}

// ---- the list of analyses ----------------------------------------------------------

const listState = { filters: {}, cursors: [] };

async function renderList() {
  const f = listState.filters;
  const showInvalid = el("input", { type: "checkbox", name: "show_invalid", value: "yes" });
  showInvalid.checked = f.show_invalid === "yes";
  showInvalid.addEventListener("change", () => form.requestSubmit());
  const form = el("form", { class: "filters", id: "filters" },
    el("label", {}, "status", el("select", { name: "status" },
      ...["", "running", "success", "fail", "abort", "stale"].map((s) => {
        const option = el("option", { value: s }, s || "any");
        if (s === (f.status || "")) option.selected = true;
        return option;
      }))),
    el("label", {}, "analysis name", el("input", { name: "name", value: f.name || "", placeholder: "e.g. uvvis_absorbance" })),
    el("label", {}, "text in", el("select", { name: "field" },
      ...["sample", "project", "owner"].map((s) => {
        const option = el("option", { value: s }, s);
        if (s === (f.field || "sample")) option.selected = true;
        return option;
      }))),
    el("label", {}, "contains", el("input", { name: "text", value: f.text || "" })),
    el("label", {}, "from", el("input", { name: "from", type: "date", value: f.from || "" })),
    el("label", {}, "to", el("input", { name: "to", type: "date", value: f.to || "" })),
    el("label", { class: "check" }, showInvalid, "show invalid"),
    el("button", { type: "submit" }, "filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    listState.filters = Object.fromEntries(data.entries());
    listState.cursors = [];
    loadListPage().catch(showError);
  });
  main.replaceChildren(form, el("div", { id: "list-body" }));
  await loadListPage();
}

// The page of analyses under the filters (the filter form is left alone, so a live refresh never eats typing).
async function loadListPage() {
  const f = listState.filters;
  const gen = viewGen;
  const params = {
    order_by: "-time", limit: 25, include_count: "true", status: f.status,
    "provenance.analysis_name": f.name,
    [`${f.field || "sample"}__icontains`]: f.text,
    time__gte: f.from ? f.from + "T00:00:00" : undefined,
    time__lte: f.to ? f.to + "T23:59:59" : undefined,
    invalid__ne: f.show_invalid === "yes" ? undefined : "true",  // flagged analyses are hidden unless asked for
    cursor: listState.cursors[listState.cursors.length - 1],
  };
  const page = await api("/api/v1/analysis_header?" + query(params));
  const tails = await tailsFor(page.items.map((h) => h.uid));
  const body = document.getElementById("list-body");
  if (gen !== viewGen || !body) return;  // the page changed meanwhile
  const rows = page.items.map((h) => el("tr", { "data-uid": h.uid, class: isInvalid(h, tails[h.uid]) ? "invalid" : "" },
    el("td", {}, link(h.uid)),
    el("td", {}, (h.provenance || {}).analysis_name || ""),
    el("td", {}, h.sample === undefined ? "" : typeof h.sample === "string" ? h.sample : showJson(h.sample)),
    el("td", {}, h.project || ""),
    el("td", {}, when(h.time)),
    el("td", { class: "status-cell" }, badge(statusOf(h, tails[h.uid])), ...flags(h, tails[h.uid]))));
  const next = el("button", { id: "next-page", onclick: () => {
    listState.cursors.push(page.meta.next_cursor);
    loadListPage().catch(showError);
  } }, "next page");
  next.disabled = !page.meta.next_cursor;
  const first = el("button", { onclick: () => { listState.cursors = []; loadListPage().catch(showError); } }, "first page");
  first.disabled = listState.cursors.length === 0;
  body.replaceChildren(
    el("div", { class: "pager" }, first, next, el("span", { class: "muted", id: "count" }, plural(page.meta.count, "analysis", "analyses"))),
    el("table", { id: "analyses" },
      el("thead", {}, el("tr", {}, ...["uid", "analysis", "sample", "project", "time", "status"].map((t) => el("th", {}, t)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no analyses match")))));
}

// ---- one analysis ----------------------------------------------------------------------

function kv(entries) {
  return el("dl", { class: "kv" }, ...entries.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

async function renderAnalysis(uid) {
  const gen = viewGen;
  const view = await api("/api/v1/analysis/" + encodeURIComponent(uid));
  const h = view.header;
  const prov = h.provenance || {};
  const inputs = prov.inputs || [];
  const usedBy = await api("/api/v1/analysis_header?" + query({ "provenance.inputs": uid, fields: "uid,provenance.analysis_name", limit: 100 }));
  const download = el("button", { id: "download", onclick: () => downloadBundle(uid).catch(showError) }, "download bundle (.zip)");
  const lineage = lineageCard(uid);  // its two requests run while the rest is fetched
  const invalid = isInvalid(h, view.tail);
  const notes = notesOf(h, view.tail);
  const cards = [
    el("div", { class: "card" + (invalid ? " invalid" : "") },
      el("h2", {}, (prov.analysis_name || "analysis") + " ", badge(view.status), ...flags(h, view.tail)),
      invalid ? el("p", { class: "invalid-banner", id: "invalid-flag" },
        "Flagged invalid: do not use these results.") : null,
      notes.length ? el("div", { class: "notes", id: "notes" }, ...notes.map((n) => el("p", {}, n))) : null,
      kv([["uid", h.uid], ["time", when(h.time)], ["sample", h.sample && showJson(h.sample).replace(/^"|"$/g, "")],
        ["project", h.project], ["owner", h.owner], ["tags", tagsOf(h, view.tail).join(", ")],
        ["technique", h.technique_name], ["code hash", prov.analysis_codehash], ["revision", h._revision]]),
      el("div", { class: "controls" }, download)),
    el("div", { class: "card" }, el("h2", {}, "provenance"),
      el("h3", {}, "inputs"), inputs.length ? el("ul", { id: "inputs" }, ...inputs.map((u) => el("li", {}, link(u)))) : el("p", { class: "muted" }, "none"),
      el("h3", {}, "used by"), usedBy.items.length
        ? el("ul", { id: "used-by" }, ...usedBy.items.map((d) => el("li", {}, link(d.uid), " ", (d.provenance || {}).analysis_name || "")))
        : el("p", { class: "muted" }, "no later analysis uses this one"),
      el("h3", {}, "parameters and provenance"), el("pre", {}, showJson(prov, 2))),
    await lineage,
    filesCard(view.files || []),
  ];
  for (const stream of view.streams) cards.push(await streamCard(stream));
  cards.push(el("div", { class: "card" }, el("h2", {}, "tail"), view.tail
    ? kv([["exit status", badge(view.tail.exit_status)], ["reason", view.tail.reason], ["time", when(view.tail.time)], ["notes", view.tail.notes]])
    : el("p", { class: "muted" }, "no tail yet: the analysis has not ended")));
  cards.push(await revisionsCard(uid, view.tail));
  if (gen !== viewGen) return;  // the page changed meanwhile
  analysisState = { uid, signature: signatureOf(view) };
  const scroll = window.scrollY;  // a live refresh keeps the reader where they were
  main.replaceChildren(el("p", {}, el("a", { href: "#/" }, "← all analyses")), ...cards);
  window.scrollTo(0, scroll);
}

// What a live refresh of the analysis page looks for: a new revision of the header, or a tail (or its revision).
function signatureOf(view) {
  return JSON.stringify([view.header._revision, view.tail && view.tail.uid, view.tail && view.tail._revision,
    (view.files || []).length]);
}

// ---- lineage: both directions as indented trees --------------------------------------

const LINEAGE_DEPTH = 10;
const LINEAGE_SHOWN = 300;  // nodes drawn per direction; the rest are counted

async function lineageCard(uid) {
  const base = "/api/v1/analysis/" + encodeURIComponent(uid);
  const provLinks = [["json", "PROV-JSON"], ["provn", "PROV-N"], ["xml", "PROV-XML"]].map(([fmt, label]) =>
    fileLink(`${base}/prov?${query({ format: fmt, depth: LINEAGE_DEPTH })}`, `${uid}.prov.${fmt}`, label,
      { class: "prov-link", "data-format": fmt }));
  const card = el("div", { class: "card", id: "lineage" }, el("h2", {}, "lineage"),
    el("p", { class: "controls" }, "W3C PROV export of this analysis and its ancestors: ", ...provLinks));
  const directions = [["ancestors", "derived from (ancestors)", "no inputs: nothing upstream"],
    ["descendants", "used by (descendants)", "no later analysis uses this one"]];
  const answers = await Promise.all(directions.map(([direction]) =>
    api(`${base}/lineage?${query({ direction, depth: LINEAGE_DEPTH })}`).catch((error) => error)));
  directions.forEach(([direction, title, none], i) => {
    const answer = answers[i];
    const section = el("div", { class: "lineage", id: "lineage-" + direction }, el("h3", {}, title));
    if (answer instanceof Error) section.append(el("p", { class: "error-text" }, answer.message));
    else if (answer.nodes.length <= 1) section.append(el("p", { class: "muted" }, none));
    else section.append(lineageTree(answer));
    card.append(section);
  });
  return card;
}

// Each analysis once, under one analysis a level nearer the root (a diamond shows its other links as "also").
function lineageTree(graph) {
  const up = graph.direction === "ancestors";
  const byUid = new Map(graph.nodes.map((n) => [n.uid, n]));
  const children = new Map(graph.nodes.map((n) => [n.uid, []]));
  const placed = new Set([graph.uid]);
  const links = new Map();  // how many analyses of the graph each one hangs from
  for (const edge of graph.edges) {
    const [parent, child] = up ? [edge.analysis, edge.input] : [edge.input, edge.analysis];
    const p = byUid.get(parent), c = byUid.get(child);
    if (!p || !c) continue;
    links.set(child, (links.get(child) || 0) + 1);
    if (c.depth !== p.depth + 1 || placed.has(child)) continue;
    placed.add(child);
    children.get(parent).push(child);
  }
  let shown = 0;
  const item = (uid) => {
    const n = byUid.get(uid);
    shown += 1;
    const kids = children.get(uid);
    const extra = n.depth ? (links.get(uid) || 1) - 1 : 0;
    return el("li", { "data-uid": uid, "data-depth": n.depth },
      n.depth === 0 ? el("strong", {}, "this analysis") : link(uid), " ",
      el("span", { class: "name" }, n.analysis_name || ""), " ", n.status ? badge(n.status) : null,
      n.depth ? el("span", { class: "muted depth" }, ` depth ${n.depth}`) : null,
      extra ? el("span", { class: "muted" }, ` (also ${up ? "input of" : "uses"} ${plural(extra, "other", "others")})`) : null,
      kids.length ? el("ul", {}, ...kids.map((k) => (shown < LINEAGE_SHOWN ? item(k) : null))) : null);
  };
  const tree = el("ul", { class: "tree" }, item(graph.uid));
  const deepest = Math.max(...graph.nodes.map((n) => n.depth));
  const notes = [];
  if (shown < graph.nodes.length) notes.push(`${graph.nodes.length - shown} more not drawn`);
  if (deepest >= graph.depth) notes.push(`may go on beyond depth ${graph.depth}`);
  return el("div", {}, tree, notes.length ? el("p", { class: "muted" }, notes.join("; ")) : null);
}

// ---- files ---------------------------------------------------------------------------

const THUMBNAIL_TYPES = new Set(["image/png", "image/jpeg", "image/svg+xml", "image/gif", "image/webp"]);
const THUMBNAIL_MAX_BYTES = 20 << 20;  // larger pictures are only linked, not fetched for a thumbnail

function humanSize(bytes) {
  if (typeof bytes !== "number" || !isFinite(bytes)) return "";
  if (bytes < 1024) return plural(bytes, "byte", "bytes");
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = -1;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

function filesCard(files) {
  const total = files.reduce((sum, f) => sum + (f.size || 0), 0);
  const card = el("div", { class: "card", id: "files" }, el("h2", {}, "files ",
    el("span", { class: "muted", "data-count": files.length }, files.length ? `${files.length}, ${humanSize(total)} in all` : "")));
  if (!files.length) { card.append(el("p", { class: "muted" }, "no files attached")); return card; }
  card.append(el("table", { class: "files" },
    el("thead", {}, el("tr", {}, ...["", "name", "size", "content type", "sha256"].map((t) => el("th", {}, t)))),
    el("tbody", {}, ...files.map((f) => {
      const href = "/api/v1/files/" + encodeURIComponent(f.uid);
      const type = String(f.content_type || "").split(";")[0].trim().toLowerCase();
      const thumb = THUMBNAIL_TYPES.has(type) && f.size <= THUMBNAIL_MAX_BYTES ? thumbnail(href, f.name) : null;
      return el("tr", { "data-file": f.uid },
        el("td", { class: "thumb-cell" }, thumb),
        el("td", {}, fileLink(href, f.name, f.name, { class: "file-link" })),
        el("td", { class: "num", title: plural(f.size, "byte", "bytes") }, humanSize(f.size)),
        el("td", {}, f.content_type || ""),
        el("td", { class: "sha", title: f.sha256 || "" }, (f.sha256 || "").slice(0, 12)));
    }))));
  return card;
}

// Pictures shown through <img>, which never runs a script in an SVG; the download itself is an attachment
// in a CSP sandbox (handlers/files.py). With a token the bytes are fetched with it and shown from a blob.
function thumbnail(href, name) {
  const img = el("img", { class: "thumb", alt: name, loading: "lazy" });
  if (!sessionStorage.getItem(TOKEN_KEY)) img.src = href;
  else {
    api(href, { raw: true, headers: { Accept: "*/*" } }).then((r) => r.blob())
      .then((blob) => { img.src = URL.createObjectURL(blob); img.onload = () => URL.revokeObjectURL(img.src); })
      .catch(() => img.replaceWith(el("span", { class: "muted" }, "(no preview)")));
  }
  return img;
}

// A link that downloads: a plain link without a token, a fetch that carries the token when one is set.
function fileLink(href, filename, text, attrs = {}) {
  return el("a", Object.assign({ href, download: filename, onclick: (event) => {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    event.preventDefault();
    api(href, { raw: true, headers: { Accept: "*/*" } }).then((r) => r.blob()).then((blob) => saveBlob(blob, filename))
      .catch(showError);
  } }, attrs), text);
}

async function streamCard(stream) {
  const keys = Object.entries(stream.data_keys);
  const card = el("div", { class: "card stream", "data-stream": stream.uid },
    el("h2", {}, `stream ${stream.name || stream.uid} `, el("span", { class: "muted" }, plural(stream.record_count, "record", "records"))),
    el("table", {}, el("thead", {}, el("tr", {}, ...["key", "dtype", "shape", "units"].map((t) => el("th", {}, t)))),
      el("tbody", {}, ...keys.map(([k, d]) => el("tr", {}, el("td", {}, k), el("td", {}, d.dtype),
        el("td", {}, d.shape ? JSON.stringify(d.shape) : ""), el("td", {}, d.units || ""))))));
  const records = el("div", {});
  const plot = el("div", { class: "plot-area" });
  card.append(el("h3", {}, "records"), records, el("h3", {}, "plot"), plot);
  await recordsTable(stream, records, []);
  plotControls(stream, plot);
  return card;
}

async function recordsTable(stream, container, cursors) {
  const params = { data_reference_header: stream.uid, order_by: "seq_num,time", limit: 10, cursor: cursors[cursors.length - 1] };
  const page = await api("/api/v1/data_reference?" + query(params));
  const keys = Object.keys(stream.data_keys);
  const cell = (v) => Array.isArray(v) ? `[${v.length} values]` : typeof v === "number" ? Number(v.toPrecision(6)) : showJson(v);
  const next = el("button", { onclick: () => recordsTable(stream, container, [...cursors, page.meta.next_cursor]).catch(showError) }, "next records");
  next.disabled = !page.meta.next_cursor;
  container.replaceChildren(
    el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "seq_num"), ...keys.map((k) => el("th", {}, k)))),
      el("tbody", {}, ...page.items.map((r) => el("tr", {}, el("td", { class: "num" }, r.seq_num ?? ""),
        ...keys.map((k) => el("td", { class: "num" }, k in r.data ? cell(r.data[k]) : "")))))),
    el("div", { class: "pager" }, next));
}

function plotControls(stream, container) {
  const numeric = Object.entries(stream.data_keys).filter(([, d]) => ["number", "integer", "array"].includes(d.dtype)).map(([k]) => k);
  if (!numeric.length) { container.append(el("p", { class: "muted" }, "no numeric keys to plot")); return; }
  const arrays = Object.entries(stream.data_keys).filter(([, d]) => d.dtype === "array").map(([k]) => k);
  const xChoices = arrays.length ? arrays : ["seq_num", "time", ...numeric];
  const x = el("select", { class: "plot-x" }, ...xChoices.map((k) => el("option", { value: k }, k)));
  const y = el("select", { class: "plot-y" }, ...numeric.filter((k) => !arrays.length || arrays.includes(k)).map((k) => el("option", { value: k }, k)));
  if (y.options.length > 1) y.selectedIndex = 1;
  const area = el("div", {});
  const draw = () => drawPlot(stream, x.value, y.value, area).catch(showError);
  x.addEventListener("change", draw);
  y.addEventListener("change", draw);
  container.append(el("div", { class: "controls" }, "x ", x, " y ", y), area);
  draw();
}

async function drawPlot(stream, xKey, yKey, area) {
  const page = await api("/api/v1/data_reference?" + query({ data_reference_header: stream.uid, order_by: "seq_num,time", limit: 2000 }));
  let points = [];
  const first = page.items[0];
  if (first && Array.isArray(first.data[yKey])) {  // array data: one curve from the first record
    const ys = first.data[yKey];
    const xs = Array.isArray(first.data[xKey]) ? first.data[xKey] : ys.map((_, i) => i);
    points = ys.map((v, i) => [xs[i], v]);
  } else {
    const xOf = (r) => (xKey === "seq_num" ? r.seq_num : xKey === "time" ? r.time : r.data[xKey]);
    points = page.items.map((r) => [xOf(r), r.data[yKey]]);
  }
  points = points.filter(([a, b]) => typeof a === "number" && typeof b === "number" && isFinite(a) && isFinite(b));
  area.replaceChildren(points.length ? svgPlot(points, xKey, yKey) : el("p", { class: "muted" }, "nothing numeric to plot"));
}

function svgPlot(points, xLabel, yLabel) {
  const W = 640, H = 300, L = 60, R = 15, T = 15, B = 40;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "plot");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  add("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
  add("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
  for (let i = 0; i <= 4; i++) {
    const xv = x0 + ((x1 - x0) * i) / 4, yv = y0 + ((y1 - y0) * i) / 4;
    add("text", { x: sx(xv), y: H - B + 15, "text-anchor": "middle" }, Number(xv.toPrecision(4)));
    add("text", { x: L - 6, y: sy(yv) + 4, "text-anchor": "end" }, Number(yv.toPrecision(4)));
  }
  add("text", { x: (L + W - R) / 2, y: H - 5, "text-anchor": "middle" }, xLabel);
  add("text", { x: L + 6, y: T + 4 }, yLabel);
  const sorted = [...points].sort((a, b) => a[0] - b[0]);
  add("polyline", { class: "line", points: sorted.map(([a, b]) => `${sx(a).toFixed(1)},${sy(b).toFixed(1)}`).join(" ") });
  if (sorted.length <= 200) {  // few points: mark each, so a single record still shows
    for (const [a, b] of sorted) add("circle", { class: "point", cx: sx(a).toFixed(1), cy: sy(b).toFixed(1), r: 3 });
  }
  return svg;
}

async function revisionsCard(uid, tail) {
  const card = el("div", { class: "card" }, el("h2", {}, "revisions"));
  for (const [docType, docUid] of [["analysis_header", uid], ["analysis_tail", tail && tail.uid]]) {
    if (!docUid) continue;
    const body = await api(`/api/v1/${docType}/${encodeURIComponent(docUid)}/revisions`);
    card.append(el("h3", {}, docType), body.items.length
      ? el("ul", {}, ...body.items.map((r) => el("li", {}, `revision ${r.revision}, replaced ${when(r.replaced_at)}`,
        el("pre", {}, showJson(r.document, 2)))))
      : el("p", { class: "muted" }, "never changed"));
  }
  return card;
}

async function downloadBundle(uid) {
  const response = await api("/api/v1/analysis/" + encodeURIComponent(uid) + "/bundle", { raw: true, headers: { Accept: "application/zip" } });
  saveBlob(await response.blob(), uid + ".zip");
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- running count, live updates, token, routing -------------------------------------

let runningSeq = 0;

async function refreshRunning() {
  const seq = ++runningSeq;  // answers may come back out of order: only the latest is shown
  let text = "running: –";
  try {
    const body = await api("/api/v1/analysis_header?" + query({ status: "running", include_count: "true", limit: 1, fields: "uid" }));
    text = `running: ${body.meta.count}`;
  } catch (_) { /* shown as unknown */ }
  if (seq === runningSeq) document.getElementById("running").textContent = text;
}

function currentView() {
  const match = location.hash.match(/^#\/analysis\/(.+)$/);
  return match ? { kind: "analysis", uid: decodeURIComponent(match[1]) } : { kind: "list" };
}

// The count, the list and the analysis page follow GET /api/v1/events (Server-Sent Events, read with fetch so
// the token can go with it: EventSource cannot send a header). When the stream cannot be had they poll, and the
// stream is tried again with growing pauses; a reconnection resumes after the last event seen (Last-Event-ID).
const POLL_MS = window.analysisstorePollMs || 10000;
const STALE_CHECK_MS = 60000;  // an analysis turns stale with time alone: no event says so
const live = { mode: "", lastEventId: null, controller: null, retryMs: 1000, poller: null, opened: false, timers: {} };

function setLiveMode(mode) {
  if (mode === live.mode) return;
  live.mode = mode;
  document.body.dataset.live = mode;
  const badge = document.getElementById("live");
  badge.textContent = mode === "sse" ? "live" : "polling";
  badge.title = mode === "sse" ? "updates arrive as they happen (server-sent events)"
    : `no event stream: refreshed every ${Math.round(POLL_MS / 1000)} s`;
  badge.hidden = false;
  clearInterval(live.poller);
  live.poller = setInterval(() => {
    refreshRunning();
    if (live.mode === "polling") pollView().catch(() => {});
  }, mode === "sse" ? STALE_CHECK_MS : POLL_MS);
}

async function startLive() {
  if (live.controller) live.controller.abort();
  const controller = new AbortController();
  live.controller = controller;
  const headers = { Accept: "text/event-stream" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const resuming = live.lastEventId !== null;
  if (resuming) headers["Last-Event-ID"] = live.lastEventId;
  try {
    const response = await fetch("/api/v1/events?" + query({ doc_type: "analysis_header,analysis_tail" }),
      { headers, signal: controller.signal, cache: "no-store" });
    if (response.status === 400 && resuming) {
      live.lastEventId = null;  // too old to resume from: start afresh and re-read what may have been missed
      live.retryMs = 0;
      throw new Error("resume refused");
    }
    if (!response.ok || !response.body) throw new Error(`event stream: ${response.status}`);
    setLiveMode("sse");
    live.retryMs = 1000;
    refreshRunning();  // whatever happened before the stream opened
    if (live.opened && !resuming) refreshView();
    live.opened = true;
    await readEvents(response.body, onEvent);
  } catch (_) { /* fall through: poll, and try again */ }
  if (controller !== live.controller || controller.signal.aborted) return;  // a newer stream took over
  setLiveMode("polling");
  setTimeout(() => { if (controller === live.controller) startLive(); }, live.retryMs);
  live.retryMs = Math.min(Math.max(live.retryMs * 2, 1000), 60000);
}

// text/event-stream, as the service writes it: blocks separated by a blank line; id, event, data fields.
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", id: null, data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;  // a comment: connected, keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
        if (field === "data") message.data.push(text);
        else if (field === "event") message.event = text;
        else if (field === "id") message.id = text;
      }
      if (message.id !== null) live.lastEventId = message.id;
      if (message.data.length) handle(message.event, message.data.join("\n"));
    }
  }
}

// Bursts of events (a whole analysis written at once) become one refresh of each thing on the page.
function soon(key, ms, fn) {
  if (live.timers[key]) return;
  live.timers[key] = setTimeout(() => {
    live.timers[key] = null;
    Promise.resolve(fn()).catch(showError);
  }, ms);
}

function onEvent(_, data) {
  let event;
  try { event = parseJson(data); } catch (_) { return; }
  soon("running", 250, refreshRunning);
  const view = currentView();
  if (view.kind === "list") soon("view", 750, refreshView);
  else {
    const doc = event.document || {};
    const ours = event.doc_type === "analysis_header" ? event.uid === view.uid : doc.analysis_header === view.uid;
    if (ours) soon("view", 250, refreshView);
  }
}

// Redraw what the page shows, in place (the list's page or the analysis), once it has been drawn.
async function refreshView() {
  if (main.getAttribute("data-ready") !== "true") return;
  const view = currentView();
  if (view.kind === "list") await loadListPage();
  else await renderAnalysis(view.uid);
}

// Polling: the list is re-read; the analysis page only when its header, tail or files changed.
async function pollView() {
  const view = currentView();
  if (view.kind === "list" || main.getAttribute("data-ready") !== "true") return refreshView();
  const now = await api("/api/v1/analysis/" + encodeURIComponent(view.uid));
  if (analysisState.uid !== view.uid || signatureOf(now) !== analysisState.signature) await refreshView();
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = document.getElementById("token").value.trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("token").value = "";
  route();
  startLive();  // the stream carries the token too
});

async function route() {
  const gen = ++viewGen;
  clearError();
  try {
    const status = await api("/api/v1/status");
    staleAfter = status.stale_after_seconds;
  } catch (error) { showError(error); }
  refreshRunning();
  const view = currentView();
  main.replaceChildren(el("p", { class: "muted" }, "loading…"));
  try {
    if (view.kind === "analysis") await renderAnalysis(view.uid);
    else await renderList();
    if (gen === viewGen) main.setAttribute("data-ready", "true");
  } catch (error) {
    if (gen !== viewGen) return;
    main.replaceChildren();
    showError(error);
  }
}

window.addEventListener("hashchange", () => { main.removeAttribute("data-ready"); route(); });
route();
startLive();
