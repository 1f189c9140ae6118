// marrowdiff review station: plain JavaScript; the slide view is OpenSeadragon (its npm
// release, shipped in static/openseadragon/ with its licence).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  me: null, // {accounts, name?, role?} from /api/me
  info: null, caseId: null, view: null, order: [], selected: null,
  tab: "cells", field: 0, // the field view's field (index into fieldImages())
  slide: 0, viewer: null, shown: null, // the slide view's slide, its viewer, the image shown
  marksFor: null, trackers: [], // the image whose cells are marked, their click trackers
};
const SVG = "http://www.w3.org/2000/svg";

function say(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function user() {
  return state.me && state.me.name ? state.me.name : $("#user").value.trim();
}

async function api(method, path, body) {
  // X-User names the typed user on a station without accounts: percent-encoded, since a
  // header carries only Latin-1 ("Łukasz" would stop every request). X-Requested-With marks a
  // change as the page's own (the server refuses changes without it).
  const headers = { "X-Requested-With": "marrowdiff" };
  if (!(state.me && state.me.accounts)) headers["X-User"] = encodeURIComponent(user());
  let payload = body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && state.me && state.me.accounts && path !== "/api/login") {
    showLogin("your session has ended: log in again");
    throw new Error("not logged in");
  }
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    say(detail || response.statusText, true);
    throw new Error(detail);
  }
  if (method !== "GET" && $("#status").className === "error") say(""); // it no longer applies
  return data;
}

function needUser() {
  if (user()) return true;
  say("type your user name first (top left)", true);
  $("#user").focus();
  return false;
}

// ---- cases -------------------------------------------------------------------------------

async function showCases() {
  state.caseId = null;
  $("#case-view").hidden = true;
  $("#cases-view").hidden = false;
  const rows = await api("GET", "/api/cases");
  const body = $("#cases tbody");
  body.replaceChildren(...rows.map((c) => {
    const tr = document.createElement("tr");
    const review = c.reviewers < 2 ? "one reviewer" : c.unblinded_at
      ? `blind x${c.reviewers}, opened` : `blind x${c.reviewers}`;
    for (const v of [c.name, review, c.n_cells, c.n_pending, c.created_at, c.signed_at || ""]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    tr.onclick = () => { location.hash = `case/${c.id}`; };
    return tr;
  }));
  const d = await api("GET", "/api/detection");
  const rate = (v) => (v === null ? "n/a" : v.toFixed(3));
  $("#detection").textContent = d.cases === 0
    ? "Detection on real fields: known once a case with fields is signed."
    : `Detection on the fields of ${d.cases} signed case(s), by the reviewers' verdicts: ` +
      `precision ${rate(d.precision)}, recall ${rate(d.recall)} (${d.found} cells found, ` +
      `${d.not_a_cell} not cells, ${d.added} missed cell(s) added).`;
  // How the reviewers agree over every case whose blind review is over (none yet: 404).
  const response = await fetch("/api/agreement");
  const a = response.ok ? await response.json() : null;
  const f = (v, digits = 2) => (v === null ? "n/a" : v.toFixed(digits));
  $("#agreement-all").textContent = a ? `Blind double review over ${a.cases.length} ` +
    `case(s), ${a.cells} cells: the reviewers agreed on ${f(a.pooled.percent, 1)}% of pairs ` +
    `of verdicts (adjacent stage: ${f(a.pooled.adjacent_percent, 1)}%), Cohen's kappa ` +
    `${f(a.pooled.kappa)}, Fleiss' kappa ${f(a.fleiss_kappa)}.` : "";
}

$("#new-case").onsubmit = async (event) => {
  event.preventDefault();
  if (!needUser()) return;
  const made = await api("POST", "/api/cases", {
    name: $("#case-name").value, patient: $("#case-patient").value, stain: $("#case-stain").value,
    reviewers: Number($("#case-reviewers").value), hide_model: $("#case-hide-model").checked,
  }).catch(() => null);
  if (!made) return; // refused: the reason is on the status line
  $("#case-name").value = "";
  $("#case-patient").value = "";
  location.hash = `case/${made.id}`;
};

// ---- one case ----------------------------------------------------------------------------

function classOf(code) {
  return state.info.classes.find((c) => c.code === code) || { code, name: code, abbrev: code };
}

function isSigned() {
  return Boolean(state.view && state.view.case.signed_at);
}

// ---- blind double review: own verdicts only until all are in, then adjudication ----------

function blindPhase() {
  // The case's blind review is running: each reviewer sees only their own verdicts.
  return Boolean(state.view && state.view.blind && !state.view.blind.open);
}

function adjudicating() {
  // The verdicts are opened: the cells they disagree on (still pending) go to an adjudicator.
  return Boolean(state.view && state.view.blind && state.view.blind.open);
}

function todo(cell) {
  // Whether a cell still waits for this person: their verdict (blind), or a decision.
  return blindPhase() ? !cell.my_verdict : cell.status === "pending";
}

function shownLabel(cell) {
  // What a cell is called on the page: in a blind review that hides the model, the
  // reviewer's own verdict (or "?"); otherwise its class now.
  if (cell.label === null || cell.label === undefined) {
    return cell.my_verdict ? verdictName(cell.my_verdict, true) : "?";
  }
  return verdictName(cell.label, true);
}

function verdictName(verdict, short = false) {
  if (verdict === "not_a_cell") return short ? "not" : "not a cell";
  if (verdict === "unidentified") return short ? "unid." : "unidentified";
  if (verdict.includes("|")) {
    return "between " + verdict.split("|").map((c) => classOf(c)[short ? "abbrev" : "name"])
      .join(" and ");
  }
  return classOf(verdict)[short ? "abbrev" : "name"];
}

function renderBlind() {
  const b = state.view.blind;
  const box = $("#blind-state");
  box.hidden = !b;
  $("#agreement-box").hidden = !(b && b.open);
  if (!b) return;
  if (!b.open) {
    box.textContent = `Blind review: each cell needs ${b.reviewers} reviewers' verdicts. ` +
      `You have given ${b.mine} of ${b.cells}; ${b.complete} cell(s) have all theirs. ` +
      "Nobody sees another's verdicts until every cell has its own" +
      (b.hide_model ? ", nor the model's class." : ".");
    return;
  }
  const mayDecide = !(state.me && state.me.accounts) ||
    ["adjudicator", "signer"].includes(state.me.role);
  box.textContent = `The verdicts are opened: ${b.disputed} cell(s) the reviewers disagree ` +
    "on " + (b.disputed ? (mayDecide ? "wait for you (or another adjudicator who did not " +
    "review them): a class key decides, b: between the two stages." :
    "wait for an adjudicator.") : "were decided.");
}

async function showAgreement() {
  const a = await api("GET", `/api/cases/${state.caseId}/agreement`).catch(() => null);
  if (!a) return;
  const f = (v, d = 2) => (v === null || v === undefined ? "n/a" : v.toFixed(d));
  const rows = a.pairs.map((p) => `<tr><td>${escapeHtml(p.raters.join(" / "))}</td>` +
    `<td class="n">${p.cells}</td><td class="n">${f(p.percent, 1)}</td>` +
    `<td class="n">${f(p.adjacent_percent, 1)}</td><td class="n">${f(p.kappa)}</td></tr>`);
  $("#agreement").innerHTML =
    `<p>${a.cells} cells: all reviewers agreed on ${f(a.all_agree_percent, 1)}%; ` +
    `Cohen's kappa ${f(a.pooled.kappa)}, Fleiss' kappa ${f(a.fleiss_kappa)}, ` +
    `adjacent-stage agreement ${f(a.pooled.adjacent_percent, 1)}%.</p>` +
    "<table><tr><th>reviewers</th><th>cells</th><th>%</th><th>adjacent %</th><th>kappa</th>" +
    `</tr>${rows.join("")}</table>`;
}

$("#agreement-box").ontoggle = () => { if ($("#agreement-box").open) showAgreement(); };

async function showCase(id) {
  if (state.caseId !== id) state.field = 0;
  state.caseId = id;
  $("#cases-view").hidden = true;
  $("#case-view").hidden = false;
  state.view = await api("GET", `/api/cases/${id}`);
  renderCase();
  const first = state.order.find(todo) || state.order[0];
  select(first ? first.id : null);
}

function renderCase() {
  const v = state.view;
  $("#case-title").textContent = `Case ${v.case.name}`;
  renderBlind();
  renderDifferential(v.differential);
  renderCells();
  const signed = isSigned();
  $("#upload-box").hidden = signed || adjudicating(); // opened verdicts: no more cells
  $("#slide-box").hidden = !state.info.slides;
  $("#add-box").hidden = signed || adjudicating();
  $("#sign").hidden = signed;
  for (const button of $("#classbar").children) button.disabled = signed; // nothing to change
  const mayNotSign = Boolean(state.me && state.me.accounts && state.me.role !== "signer");
  $("#sign").disabled = mayNotSign;
  $("#sign").title = mayNotSign ? "only a signer signs off a case" : "";
  $("#signed").innerHTML = "";
  if (signed) {
    const base = `/api/cases/${v.case.id}`;
    $("#signed").innerHTML =
      `Signed by ${escapeHtml(v.case.signed_by)} at ${escapeHtml(v.case.signed_at)}.<br>` +
      `<a href="${base}/report/report.html" target="_blank">report</a> · ` +
      `<a href="${base}/report/report.json">JSON</a> · ` +
      `<a href="${base}/report/cells.csv">CSV</a> · ` +
      `<a href="${base}/export.zip">reviewed cells (training data)</a>`;
  }
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function renderDifferential(d) {
  // n: cells verified or sure of; est. %: the estimate over every cell (reviewed ones by their
  // review, pending ones by the model's top class), with its 95% interval. None while a blind
  // review hides the model's classes.
  $("#differential").classList.toggle("hidden-model", !d);
  if (!d) {
    $("#me").textContent = "The differential is hidden while the blind review runs.";
    $("#progress").textContent = "";
    $("#warnings").replaceChildren();
    return;
  }
  const estimate = Object.fromEntries(d.estimate.classes.map((r) => [r.code, r]));
  const pct = (v) => (v === null || v === undefined ? "" : v.toFixed(1));
  $("#differential tbody").replaceChildren(...d.classes.map((row) => {
    const e = estimate[row.code] || {};
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${escapeHtml(row.name)}</td><td class="n">${row.count}</td>` +
      `<td class="n">${pct(row.percent)}</td><td class="n">${pct(e.percent)}</td>` +
      `<td class="n">${e.low === null || e.low === undefined ? "" :
        `${pct(e.low)}-${pct(e.high)}`}</td>`;
    return tr;
  }));
  const me = d.me_ratio;
  $("#me").textContent = `M:E ${me.value === null ? "undefined" : me.value.toFixed(2)} ` +
    `(${me.myeloid}:${me.erythroid}). ${me.definition}.`;
  const pending = state.view.cells.filter((c) => c.status === "pending").length;
  $("#progress").textContent =
    `${d.n_counted} counted of target ${d.target}; ${pending} of ${d.n_cells_found} cells ` +
    `still to review.`;
  $("#warnings").replaceChildren(...d.warnings.map((w) => {
    const div = document.createElement("div");
    div.className = "warn";
    div.textContent = w;
    return div;
  }));
}

function groups() {
  // Unreviewed cells the model is unsure of (or that the border cuts) first, then the cells
  // by class, then the objects set aside as not nucleated cells (platelets, red cells,
  // debris: a class key restores one as a cell), unidentified ones, and those marked not a cell.
  const cells = state.view.cells;
  if (blindPhase()) {
    return [{ title: "Your verdict to give", cells: cells.filter((c) => !c.my_verdict) },
      { title: "Your verdicts given", cells: cells.filter((c) => c.my_verdict) }]
      .filter((g) => g.cells.length);
  }
  if (adjudicating() && cells.some((c) => c.status === "pending")) {
    const disputed = cells.filter((c) => c.status === "pending");
    const decided = cells.filter((c) => c.status !== "pending");
    return [{ title: "The reviewers disagree: for an adjudicator", cells: disputed },
      { title: "Decided", cells: decided }];
  }
  const first = cells.filter((c) => c.status === "pending" && c.model_flag);
  const rest = cells.filter((c) => !first.includes(c) &&
    !["not_a_cell", "unidentified"].includes(c.status));
  const aside = new Set(state.info.classes.filter((c) => !c.counted).map((c) => c.code));
  const out = [{ title: "Unsure or cut by the border: review first", cells: first }];
  for (const cls of state.info.classes.filter((c) => c.counted)) {
    out.push({ title: cls.name, cells: rest.filter((c) => c.label === cls.code) });
  }
  out.push({ title: "Set aside: not nucleated cells, never counted",
    cells: rest.filter((c) => aside.has(c.label)) });
  out.push({ title: "Unidentified", cells: cells.filter((c) => c.status === "unidentified") });
  out.push({ title: "Not a cell", cells: cells.filter((c) => c.status === "not_a_cell") });
  return out.filter((g) => g.cells.length);
}

function renderCells() {
  // The tab shown (the gallery or the field view) is drawn; keys move through the cells in
  // the order it shows them.
  if (state.tab === "fields" && !fieldImages().length) state.tab = "cells";
  if (state.tab === "slides" && !slideImages().length) state.tab = "cells";
  // Shown first, drawn second: the slide viewer measures its box when it opens.
  $("#gallery").hidden = state.tab !== "cells";
  $("#fields").hidden = state.tab !== "fields";
  $("#slides").hidden = state.tab !== "slides";
  const draw = { cells: renderGallery, fields: renderField, slides: renderSlide }[state.tab];
  state.order = draw();
  $("#tab-fields").disabled = fieldImages().length === 0;
  $("#tab-slides").disabled = slideImages().length === 0;
  for (const tab of ["cells", "fields", "slides"]) {
    $(`#tab-${tab}`).setAttribute("aria-selected", String(state.tab === tab));
  }
  if (state.selected) markSelected();
}

function renderGallery() {
  const gallery = $("#gallery");
  const order = [];
  gallery.replaceChildren(...groups().map((group) => {
    const section = document.createElement("div");
    section.className = "group";
    const title = document.createElement("h4");
    title.textContent = `${group.title} (${group.cells.length})`;
    const box = document.createElement("div");
    box.className = "cells";
    for (const cell of group.cells) {
      order.push(cell);
      box.append(cellElement(cell));
    }
    section.append(title, box);
    return section;
  }));
  return order;
}

// ---- the field view: each field with its cells circled; a click adds a missed cell --------

function fieldImages() {
  return state.view.images.filter((image) => image.kind === "field");
}

function renderField() {
  // Draws the current field; returns every field cell, field by field, in reading order.
  const images = fieldImages();
  const cells = state.view.cells;
  const order = images.flatMap((image) => cells.filter((c) => c.image_id === image.id)
    .sort((a, b) => a.y - b.y || a.x - b.x));
  if (!images.length) return order;
  state.field = Math.min(Math.max(state.field, 0), images.length - 1);
  const image = images[state.field];
  $("#field-name").textContent =
    `field ${state.field + 1} of ${images.length}: ${image.original_name}`;
  $("#field-warning").textContent = image.warning || "";
  $("#field-warning").hidden = !image.warning;
  const img = $("#field-img");
  const src = `/api/images/${image.id}/field.jpg`;
  if (img.getAttribute("src") !== src) img.src = src;
  const svg = $("#field-svg");
  svg.setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
  svg.classList.toggle("adding", $("#add-mode").checked && !isSigned());
  const r = state.info.cell_radius;
  svg.replaceChildren(...cells.filter((c) => c.image_id === image.id).flatMap((cell) => {
    const circle = document.createElementNS(SVG, "circle");
    circle.setAttribute("cx", cell.x);
    circle.setAttribute("cy", cell.y);
    circle.setAttribute("r", r);
    circle.setAttribute("class", `mark ${cell.status} ${cell.model_flag ? "flagged" : ""}`);
    circle.dataset.id = cell.id;
    circle.onclick = (event) => {
      event.stopPropagation();
      select(cell.id);
    };
    const text = document.createElementNS(SVG, "text");
    const left = cell.x + 2 * r > image.width; // near the right edge: the label goes left
    text.setAttribute("text-anchor", left ? "end" : "start");
    text.setAttribute("x", cell.x + (left ? -0.75 : 0.75) * r);
    text.setAttribute("y", cell.y - 0.75 * r);
    text.setAttribute("font-size", 0.4 * r); // in field px, so it scales with the field
    text.textContent = shownLabel(cell);
    return [circle, text];
  }));
  return order;
}

// ---- the slide view: deep zoom (OpenSeadragon), every counted cell marked; a click selects --

function slideImages() {
  return state.view.images.filter((image) => image.kind === "slide");
}

function renderSlide() {
  // Opens the current slide (once) and marks its cells; returns every slide cell, slide by
  // slide, in reading order.
  const images = slideImages();
  const cells = state.view.cells;
  const order = images.flatMap((image) => cells.filter((c) => c.image_id === image.id)
    .sort((a, b) => a.y - b.y || a.x - b.x));
  if (!images.length) return order;
  state.slide = Math.min(Math.max(state.slide, 0), images.length - 1);
  const image = images[state.slide];
  $("#slide-name").textContent =
    `slide ${state.slide + 1} of ${images.length}: ${image.original_name}`;
  if (!state.viewer) {
    state.viewer = OpenSeadragon({
      element: $("#slide-view"), showNavigationControl: false, keyboardNavEnabled: false,
      maxZoomPixelRatio: 4, animationTime: 0.3,
    });
    state.viewer.addHandler("open", markSlide);
  }
  if (state.shown !== image.id) {
    state.shown = image.id;
    state.viewer.open(`/api/images/${image.id}/slide.dzi`);
  } else {
    markSlide();
  }
  return order;
}

function markSlide() {
  // Each cell of the slide shown as a circle overlay of the cell's size, in its review state:
  // made once per slide opened, then only their classes change (a review redraws the page).
  const viewer = state.viewer;
  if (!viewer || !viewer.world.getItemCount()) return;
  if (state.marksFor !== state.shown) {
    viewer.clearOverlays();
    for (const tracker of state.trackers || []) tracker.destroy();
    state.trackers = [];
    state.marksFor = state.shown;
    const image = state.view.images.find((i) => i.id === state.shown);
    const r = state.info.cell_radius * ((image && image.scale) || 1); // level-0 px
    for (const cell of state.view.cells.filter((c) => c.image_id === state.shown)) {
      const mark = document.createElement("div");
      mark.dataset.id = cell.id;
      const rect = viewer.viewport.imageToViewportRectangle(cell.x - r, cell.y - r, 2 * r, 2 * r);
      viewer.addOverlay(mark, rect);
      state.trackers.push(new OpenSeadragon.MouseTracker({
        element: mark, clickHandler: () => select(cell.id),
      }));
    }
  }
  for (const cell of state.view.cells.filter((c) => c.image_id === state.shown)) {
    const mark = document.querySelector(`.slide-mark[data-id="${cell.id}"], ` +
      `#slide-view div[data-id="${cell.id}"]`);
    if (!mark) continue;
    const flagged = cell.status === "pending" && cell.model_flag ? "flagged" : "";
    const selected = cell.id === state.selected ? "selected" : "";
    mark.className = `slide-mark ${cell.status} ${flagged} ${selected}`;
    mark.title = `${shownLabel(cell)} (${cell.status})`;
  }
  markSelected();
}

const goToSlide = (step) => goTo(slideImages(), "slide", step);

$("#prev-slide").onclick = () => goToSlide(-1);
$("#next-slide").onclick = () => goToSlide(1);

function followOnSlide(cell) {
  // Pan the slide view to the selected cell, zooming in if the cell would be too small to see.
  const viewer = state.viewer;
  if (!viewer || !viewer.world.getItemCount() || cell.image_id !== state.shown) return;
  if (!viewer.container.clientWidth) return; // hidden: nothing to pan
  viewer.forceResize(); // the box may have changed while the view was hidden
  const viewport = viewer.viewport;
  viewport.panTo(viewport.imageToViewportCoordinates(cell.x, cell.y));
  const closeEnough = viewport.imageToViewportZoom(0.3); // a cell of 100 px: 30 px on screen
  if (viewport.getZoom() < closeEnough) viewport.zoomTo(closeEnough);
}

$("#add-slide").onclick = async () => {
  if (!needUser()) return;
  const path = $("#slide-path").value.trim();
  if (!path) return say("give the slide's path in the slide folder", true);
  say(`counting ${path}...`);
  const result = await api("POST", `/api/cases/${state.caseId}/slides`, { path })
    .catch(() => null);
  if (!result) return; // refused: the status says why
  say(`${result.result.name}: ${result.result.cells} cells counted`);
  state.tab = "slides";
  await showCase(state.caseId);
};

function showTab(tab) {
  if (tab === "fields" && !fieldImages().length) return;
  if (tab === "slides" && !slideImages().length) return;
  state.tab = tab;
  renderCells();
}

$("#tab-cells").onclick = () => showTab("cells");
$("#tab-fields").onclick = () => showTab("fields");
$("#tab-slides").onclick = () => showTab("slides");
function goTo(images, key, step) {
  // The previous or next field or slide (`key`: "field" or "slide", the index in `state`),
  // with its first cell to review selected (a selection left on the old one would pull the
  // view back to it).
  if (!images.length) return;
  state[key] = Math.min(Math.max(state[key] + step, 0), images.length - 1);
  const mine = state.view.cells.filter((c) => c.image_id === images[state[key]].id)
    .sort((a, b) => a.y - b.y || a.x - b.x);
  const first = mine.find(todo) || mine[0];
  state.selected = first ? first.id : null;
  renderCells();
}

const goToField = (step) => goTo(fieldImages(), "field", step);
$("#prev-field").onclick = () => goToField(-1);
$("#next-field").onclick = () => goToField(1);
$("#add-mode").onchange = () => renderCells();

$("#field-svg").onclick = async (event) => {
  if (!$("#add-mode").checked || isSigned() || !needUser()) return;
  const svg = $("#field-svg");
  const point = new DOMPoint(event.clientX, event.clientY)
    .matrixTransform(svg.getScreenCTM().inverse());
  const image = fieldImages()[state.field];
  const result = await api("POST", `/api/cases/${state.caseId}/images/${image.id}/cells`,
    { x: point.x, y: point.y }).catch(() => null);
  if (!result) return; // refused (no cell there, one already there...): the status says why
  state.view.cells.push(result.cell);
  state.view.differential = result.differential;
  renderDifferential(result.differential);
  select(result.cell.id);
  renderCells();
  say(`cell ${result.cell.id} added (the model says ${classOf(result.cell.label).name}): ` +
      "review it like the others");
};

function cellElement(cell) {
  const div = document.createElement("div");
  const reviewed = cell.status !== "pending";
  div.className = `cell ${cell.model_flag} ${reviewed ? "reviewed" : ""}`;
  div.dataset.id = cell.id;
  div.dataset.label = cell.label;
  div.dataset.status = cell.status;
  const img = document.createElement("img");
  img.src = `/api/cells/${cell.id}/image.jpg`;
  img.alt = `cell ${cell.id}`;
  img.loading = "lazy";
  const label = document.createElement("div");
  // The model's calibrated probability of the class the cell now has (none while hidden).
  const k = state.info.classes.findIndex((c) => c.code === cell.label);
  const p = !cell.proba ? null : k >= 0 ? cell.proba[k] : cell.probability;
  label.textContent = p === null ? shownLabel(cell) :
    `${shownLabel(cell)} ${(100 * p).toFixed(0)}%`;
  const status = document.createElement("div");
  status.className = "status";
  status.textContent = cell.status === "pending" ? (cell.model_flag || "") : cell.status;
  if (blindPhase()) status.textContent = cell.my_verdict ?
    `yours: ${verdictName(cell.my_verdict, true)}` : "";
  div.append(img, label, status);
  if (cell.verdicts && Object.keys(cell.verdicts).length) {
    const said = document.createElement("div");
    said.className = "verdicts";
    said.textContent = Object.entries(cell.verdicts)
      .map(([who, v]) => `${who}: ${verdictName(v, true)}`).join(", ");
    div.append(said);
  }
  div.onclick = () => select(cell.id);
  return div;
}

function select(id) {
  state.selected = id;
  markSelected();
}

function markSelected() {
  if (state.tab === "slides") {
    // Follow the selection to its slide, and to the cell on it.
    const cell = state.view.cells.find((c) => c.id === state.selected);
    const k = cell ? slideImages().findIndex((image) => image.id === cell.image_id) : -1;
    if (k >= 0 && k !== state.slide) {
      state.slide = k;
      renderSlide();
      return; // marked once the slide opens
    }
    if (cell) followOnSlide(cell);
  }
  if (state.tab === "fields") {
    // Follow the selection to its field.
    const cell = state.view.cells.find((c) => c.id === state.selected);
    const k = cell ? fieldImages().findIndex((image) => image.id === cell.image_id) : -1;
    if (k >= 0 && k !== state.field) {
      state.field = k;
      renderField();
    }
  }
  for (const el of document.querySelectorAll(".selected")) el.classList.remove("selected");
  for (const el of document.querySelectorAll(`[data-id="${state.selected}"]`)) {
    el.classList.add("selected");
    if (el.classList.contains("cell") && state.tab === "cells") {
      el.scrollIntoView({ block: "nearest" });
    }
  }
}

function betweenSelected() {
  // An adjudicator's "between": the two stages the reviewers named, if they are neighbours.
  const cell = state.view.cells.find((c) => c.id === state.selected);
  const said = cell && cell.verdicts ? [...new Set(Object.values(cell.verdicts))] : [];
  const stages = said.filter((v) => v !== "not_a_cell" && v !== "unidentified");
  if (!adjudicating() || stages.length !== 2) {
    say("b (between) is for a disputed cell on which the reviewers named two stages", true);
    return;
  }
  reviewSelected("corrected", null, stages);
}

function move(step) {
  const i = state.order.findIndex((c) => c.id === state.selected);
  const next = state.order[Math.min(state.order.length - 1, Math.max(0, i + step))];
  if (next) select(next.id);
}

// Reviews go to the server one at a time, in the order they were keyed; the selection moves on
// at the key press, so a fast reviewer's next key goes to the next cell, not to this one again.
const reviews = { queue: Promise.resolve(), sent: new Set() };

function reviewSelected(status, label, between) {
  if (isSigned() || state.selected === null || !needUser()) return;
  const id = state.selected;
  const byId = new Map(state.view.cells.map((c) => [c.id, c]));
  // Once a blind review's verdicts are opened, a key decides a disputed cell (adjudication).
  const decide = adjudicating() && byId.get(id).status === "pending";
  if (between && !decide) return;
  const before = state.order.map((c) => c.id);
  const at = before.indexOf(id);
  reviews.sent.add(id);
  // On to the next cell to review after this one, in the order shown now.
  const next = before.slice(at + 1).concat(before.slice(0, at))
    .find((other) => todo(byId.get(other)) && !reviews.sent.has(other));
  select(next === undefined ? id : next);
  reviews.queue = reviews.queue.then(async () => {
    try {
      const path = decide ? `/api/cells/${id}/adjudicate` : `/api/cells/${id}`;
      const result = await api("POST", path, { status, label, between });
      if (blindPhase() && result.cell.verdicts) { // the last verdict opened them all
        say("every cell has its verdicts: they are opened");
        await showCase(state.caseId);
        return;
      }
      const cells = state.view.cells;
      cells[cells.findIndex((c) => c.id === result.cell.id)] = result.cell;
      state.view.differential = result.differential;
      if (state.view.blind) {
        if (blindPhase()) state.view.blind.mine = cells.filter((c) => c.my_verdict).length;
        else state.view.blind.disputed = cells.filter((c) => c.status === "pending").length;
        renderBlind();
      }
      renderDifferential(result.differential);
      renderCells();
      say(blindPhase() ? `cell ${result.cell.id}: your verdict, ` +
        verdictName(result.cell.my_verdict) :
        `cell ${result.cell.id}: ${result.cell.status} as ${verdictName(result.cell.label)}`);
    } catch (error) {
      // api() has said why; the cell stays as it was, to be reviewed again.
    } finally {
      reviews.sent.delete(id);
    }
  });
}

$("#upload").onclick = async () => {
  const files = $("#files").files;
  if (!files.length || !needUser()) return;
  const form = new FormData();
  for (const file of files) form.append("files", file);
  say(`counting ${files.length} image(s)...`);
  const result = await api("POST", `/api/cases/${state.caseId}/images`, form).catch(() => null);
  if (!result) return; // refused (too large, not an image, a signed case): the status says why
  const problems = result.results.filter((r) => r.error).map((r) => r.error)
    .concat(result.results.filter((r) => r.warning).map((r) => `${r.name}: ${r.warning}`));
  const found = result.results.filter((r) => !r.error).reduce((n, r) => n + r.cells, 0);
  say(`${found} cells found` + (problems.length ? `; ${problems.join("; ")}` : ""),
      problems.length > 0);
  $("#files").value = "";
  await showCase(state.caseId);
};

$("#sign").onclick = async () => {
  if (!needUser()) return;
  await reviews.queue; // the last reviews typed reach the server first
  try {
    await api("POST", `/api/cases/${state.caseId}/sign`);
  } catch (error) {
    return; // refused: the reason is on the status line
  }
  say("signed: the report is written");
  await showCase(state.caseId);
};

$("#back").onclick = (event) => {
  event.preventDefault();
  location.hash = "";
};

document.addEventListener("keydown", (event) => {
  const typing = event.target.tagName === "INPUT" && event.target.type !== "checkbox";
  if (state.caseId === null || typing) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const cls = state.info.classes.find((c) => c.key === event.key);
  let handled = true;
  if (cls) reviewSelected("corrected", cls.code);
  else if (event.key === "Enter") reviewSelected("confirmed");
  else if (event.key === "x") reviewSelected("not_a_cell");
  else if (event.key === "u") reviewSelected("unidentified");
  else if (event.key === "b") betweenSelected();
  else if (event.key === "f") showTab(state.tab === "cells" ? "fields" : "cells");
  else if (event.key === "s") showTab(state.tab === "slides" ? "cells" : "slides");
  else if (state.tab === "slides" && (event.key === "[" || event.key === "]")) {
    goToSlide(event.key === "]" ? 1 : -1);
  }
  else if (state.tab === "fields" && (event.key === "[" || event.key === "]")) {
    goToField(event.key === "]" ? 1 : -1);
  } else if (state.tab === "fields" && event.key === "a" && !isSigned()) {
    $("#add-mode").checked = !$("#add-mode").checked;
    renderCells();
  }
  else if (event.key === "ArrowRight" || event.key === "ArrowDown") move(1);
  else if (event.key === "ArrowLeft" || event.key === "ArrowUp") move(-1);
  else handled = false;
  if (handled) event.preventDefault();
});

// ---- start -------------------------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#case\/(\d+)$/);
  (match ? showCase(Number(match[1])) : showCases()).catch(() => {});
}

// ---- who is reviewing ----------------------------------------------------------------------

function showLogin(message) {
  state.me = { accounts: true };
  for (const id of ["#cases-view", "#case-view", "#account"]) $(id).hidden = true;
  $("#login-view").hidden = false;
  if (message) say(message, true);
  $("#login-name").focus();
}

async function whoAmI() {
  const response = await fetch("/api/me");
  state.me = await response.json().catch(() => ({ accounts: false }));
  $("#typed-user").hidden = state.me.accounts;
  $("#account").hidden = !state.me.name;
  if (state.me.name) $("#account-name").textContent = `${state.me.name} (${state.me.role})`;
  return response.ok;
}

$("#login").onsubmit = async (event) => {
  event.preventDefault();
  try {
    await api("POST", "/api/login", {
      name: $("#login-name").value, password: $("#login-password").value,
    });
  } catch (error) {
    return; // the reason is on the status line
  }
  $("#login-password").value = "";
  $("#login-view").hidden = true;
  say("");
  start();
};

$("#logout").onclick = async () => {
  await api("POST", "/api/logout").catch(() => {});
  showLogin("logged out");
};

async function start() {
  $("#user").value = localStorage.getItem("marrowdiff-user") || "";
  $("#user").oninput = () => localStorage.setItem("marrowdiff-user", user());
  if (!(await whoAmI())) {
    showLogin();
    return;
  }
  state.info = await api("GET", "/api/info");
  $("#keys").innerHTML = state.info.classes.filter((c) => c.key)
    .map((c) => `<kbd>${c.key}</kbd> ${escapeHtml(c.name)}`).join("<br>");
  $("#classbar").replaceChildren(...state.info.classes.map((c) => {
    const button = document.createElement("button");
    button.textContent = c.key ? `${c.key} ${c.abbrev}` : c.abbrev;
    button.title = c.name;
    button.onclick = () => reviewSelected("corrected", c.code);
    return button;
  }));
  if (!state.routing) window.addEventListener("hashchange", route);
  state.routing = true;
  route();
}

start();
