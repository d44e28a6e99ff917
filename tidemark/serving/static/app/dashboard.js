// Tidemark dashboard: one tenant's traffic, from the API only (the key's tenant; no tenant parameter).
// The key is entered once and kept in localStorage. window.tidemark exposes the charts and the last
// API answers, so the browser test can check that what is drawn is what the API said.
"use strict";

const KEY_STORAGE = "tidemark.apiKey";
const RANGE_STORAGE = "tidemark.range";
const state = { range: localStorage.getItem(RANGE_STORAGE) || "24h", key: localStorage.getItem(KEY_STORAGE) || "", data: {} };
const charts = {};
window.tidemark = { state, charts, loads: 0 };

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(path, params = {}, attempt = 0) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const response = await fetch(url, { headers: { "X-API-Key": state.key } });
  // 503 (query slots busy) and 429 (rate limit) say when to come back: honour Retry-After, a few times.
  if ((response.status === 503 || response.status === 429) && attempt < 3) {
    const wait = Number(response.headers.get("Retry-After") || "1");
    await sleep(Math.min(10, wait) * 1000 * (1 + Math.random() * 0.5));
    return api(path, params, attempt + 1);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return response.headers.get("content-type").includes("json") ? response.json() : response.blob();
}

function label(t, bucket) {
  const d = new Date(t * 1000);
  const iso = d.toISOString();
  if (bucket === "day") return iso.slice(0, 10);
  if (bucket === "hour") return iso.slice(5, 13).replace("T", " ") + "h";
  return iso.slice(11, 16);
}

function lineChart(canvasId, title) {
  return new Chart($(canvasId), {
    type: "line",
    data: { labels: [], datasets: [
      { label: title, data: [], borderColor: "#2563eb", backgroundColor: "rgba(37,99,235,.08)", fill: true, pointRadius: 0, tension: 0.2, borderWidth: 2 },
      { label: "previous period", data: [], borderColor: "#9aa5b4", borderDash: [5, 4], pointRadius: 0, tension: 0.2, borderWidth: 1.5 },
      { label: "anomaly", data: [], showLine: false, pointRadius: 6, pointStyle: "triangle", borderColor: "#dc2626", backgroundColor: "#dc2626" },
    ] },
    options: { animation: false, responsive: true, interaction: { mode: "index", intersect: false },
               scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 12, autoSkip: true } } },
               plugins: { legend: { position: "bottom" } } },
  });
}

// A marker on each bucket holding an anomaly of this metric (any grain, overall or per value).
function anomalyMarks(series, anomalies, metric) {
  const starts = series.points.map((p) => p.t);
  const marked = new Set();
  for (const a of anomalies.filter((x) => x.metric === metric)) {
    let i = starts.length - 1;
    while (i >= 0 && starts[i] > a.t) i -= 1;
    if (i >= 0) marked.add(i);
  }
  return series.points.map((p, i) => (marked.has(i) ? p.value : null));
}

function drawSeries(chart, series, title, anomalies = [], metric = "events") {
  chart.data.labels = series.points.map((p) => label(p.t, series.bucket));
  chart.data.datasets[0].label = title;
  chart.data.datasets[0].data = series.points.map((p) => p.value);
  chart.data.datasets[1].data = series.points.map((p) => p.previous);
  chart.data.datasets[2].data = anomalyMarks(series, anomalies, metric);
  chart.update();
}

function change(current, previous) {
  if (!previous) return "no previous data";
  const pct = ((current - previous) / previous) * 100;
  const sign = pct >= 0 ? "+" : "";
  return `<span class="${pct >= 0 ? "up" : "down"}">${sign}${pct.toFixed(1)} %</span> vs previous (${fmt.format(previous)})`;
}

function drawTop(dimension, answer) {
  const table = $(`top-${dimension}`);
  const max = Math.max(1, ...answer.rows.map((r) => r.events));
  table.innerHTML = `<tr><th>${dimension}</th><th class="num">events</th><th class="num">users</th></tr>`;
  for (const row of answer.rows) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = row.value || "(none)";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * row.events) / max}%`;
    name.appendChild(bar);
    tr.appendChild(name);
    for (const v of [row.events, row.users]) {
      const td = document.createElement("td");
      td.className = "num";
      td.textContent = fmt.format(v);
      tr.appendChild(td);
    }
    table.appendChild(tr);
  }
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${Math.round(s)} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

async function loadLive() {
  const [rt, fresh] = await Promise.all([api("/api/v1/realtime"), api("/api/v1/freshness")]);
  state.data.realtime = rt;
  state.data.freshness = fresh;
  $("realtime").textContent = fmt.format(rt.visitors);
  $("freshness").innerHTML =
    `newest minute: <b>${fresh.newest_queryable_minute ? fresh.newest_queryable_minute.slice(11, 16) + " UTC" : "none"}</b><br>` +
    `last stream commit: ${ago(fresh.stream.last_commit)}<br>` +
    `last published hour: ${fresh.last_published_hour ? fresh.last_published_hour.slice(0, 13).replace("T", " ") + "h" : "none"}`;
}

function sloValue(s) {
  if (!s.measured) return "not measured";
  return s.unit === "s" ? `${s.value.toFixed(2)} s` : `${(s.value * 100).toFixed(3)} %`;
}

// The service's SLOs (GET /slo: the SLO monitor's last evaluation; no key, no tenant in it).
async function loadSlo() {
  const response = await fetch("/slo");
  if (!response.ok) return;
  const answer = await response.json();
  state.data.slo = answer;
  if (!answer.slos.length) return;
  const table = $("slo-table");
  table.innerHTML = `<tr><th>SLO</th><th class="num">measured</th><th class="num">budget left</th><th class="num">burn rate 1 h</th><th>status</th></tr>`;
  for (const s of answer.slos) {
    const tr = document.createElement("tr");
    tr.dataset.slo = s.slo;
    // burning: spent too fast now; missed: the window's budget is gone (whatever the last hour did)
    const status = s.burning ? "burning" : !s.measured ? "none" : s.budget_left < 0 ? "missed" : "ok";
    const cells = [s.title, sloValue(s), s.measured ? `${(s.budget_left * 100).toFixed(1)} %` : "–", s.burn_rate.toFixed(2),
                   { burning: "BURNING", none: "no data", missed: "missed", ok: "ok" }[status]];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i > 0 && i < 4) td.className = "num";
      if (i === 4) td.className = `slo-${status}`;
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }
  const burning = answer.slos.filter((s) => s.burning).map((s) => s.title);
  $("slo-alert").textContent = burning.length ? `Burning its error budget: ${burning.join(", ")}` : "";
  $("slo-alert").hidden = !burning.length;
  $("slo-as-of").textContent = `evaluated ${new Date(answer.slos[0].evaluated_at * 1000).toISOString().slice(11, 19)} UTC over ${answer.slos[0].window_s / 3600} h`;
}

async function load() {
  if (!state.key) { askKey(); return; }
  document.body.dataset.state = "loading";
  showError("");
  for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("active", b.dataset.range === state.range);
  try {
    const me = await api("/api/v1/me");
    $("tenant").textContent = me.tenant;
    state.tenant = me.tenant;
    const r = { range: state.range };
    const [events, users, totals, pages, countries, devices, anomalies] = await Promise.all([
      api("/api/v1/timeseries", { ...r, metric: "events", compare: "true" }),
      api("/api/v1/timeseries", { ...r, metric: "users", compare: "true" }),
      api("/api/v1/totals", { ...r, compare: "true" }),
      api("/api/v1/top", { ...r, dimension: "page", limit: 10 }),
      api("/api/v1/top", { ...r, dimension: "country", limit: 8 }),
      api("/api/v1/top", { ...r, dimension: "device", limit: 5 }),
      api("/api/v1/anomalies", r),
    ]);
    Object.assign(state.data, { events, users, totals, pages, countries, devices, anomalies });
    $("events-title").textContent = `Events per ${events.bucket}`;
    $("users-title").textContent = `Unique users per ${users.bucket}`;
    drawSeries(charts.events, events, `events per ${events.bucket}`, anomalies.anomalies, "events");
    drawSeries(charts.users, users, `unique users per ${users.bucket}`, anomalies.anomalies, "users");
    $("total-events").textContent = fmt.format(totals.events);
    $("total-users").textContent = fmt.format(totals.users);
    $("total-events-prev").innerHTML = change(totals.events, totals.previous.events);
    $("total-users-prev").innerHTML = change(totals.users, totals.previous.users);
    drawTop("page", pages);
    drawTop("country", countries);
    drawTop("device", devices);
    await loadLive();
    await loadSlo().catch(() => {});
    $("as-of").textContent = `range ${events.start} – ${events.end}, loaded ${new Date().toISOString().slice(11, 19)} UTC`;
    window.tidemark.loads += 1;
    document.body.dataset.state = "ready";
  } catch (error) {
    document.body.dataset.state = "error";
    if (error.status === 401) { showError("This API key is unknown or revoked: enter another one."); askKey(); }
    else showError(`Could not load the dashboard: ${error.message}`);
  }
}

function askKey() {
  $("key-form").hidden = false;
  $("key-input").value = "";
  $("key-input").focus();
}

async function download(path, params, filename) {
  try {
    const blob = await api(path, params);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
  } catch (error) { showError(`CSV download failed: ${error.message}`); }
}

document.addEventListener("DOMContentLoaded", () => {
  charts.events = lineChart("events-chart", "events");
  charts.users = lineChart("users-chart", "unique users");
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key-input").value.trim();
    localStorage.setItem(KEY_STORAGE, state.key);
    $("key-form").hidden = true;
    load();
  });
  $("change-key").addEventListener("click", askKey);
  for (const b of document.querySelectorAll("#ranges button")) {
    b.addEventListener("click", () => { state.range = b.dataset.range; localStorage.setItem(RANGE_STORAGE, state.range); load(); });
  }
  $("csv-series").addEventListener("click", () =>
    download("/api/v1/export/timeseries.csv", { range: state.range, metric: "events", compare: "true" }, `events-${state.range}.csv`));
  for (const b of document.querySelectorAll(".csv-top")) {
    b.addEventListener("click", () =>
      download("/api/v1/export/top.csv", { range: state.range, dimension: b.dataset.dimension, limit: 100 }, `top-${b.dataset.dimension}-${state.range}.csv`));
  }
  setInterval(() => { if (state.key && document.body.dataset.state === "ready") { loadLive().catch(() => {}); loadSlo().catch(() => {}); } }, 15000);
  load();
});
