// LLM Auto-Optimizer dashboard: plain JavaScript, no build step, no framework.
//
// Every figure comes from the gateway's JSON API (/api/...) and its WebSocket (/api/stream),
// called with the key or token the user entered (kept in sessionStorage, sent as
// `Authorization: Bearer`). The API decides what a caller sees: a client key gets its own
// tenant, the admin token everything and the controls. Pages are `#/...` fragments.
"use strict";

const TOKEN_KEY = "llmopt.token";
const RANGE_KEY = "llmopt.range";
const HOUR = 3600000;
const DAY = 24 * HOUR;
/// The overview's ranges: span and window (at most a few hundred windows each).
const RANGES = {
  "1h": { span: HOUR, window: 60000, label: "1 h" },
  "6h": { span: 6 * HOUR, window: 5 * 60000, label: "6 h" },
  "24h": { span: DAY, window: 15 * 60000, label: "24 h" },
  "7d": { span: 7 * DAY, window: HOUR, label: "7 d" },
};
/// The gateway refuses reports of more windows than this (`MAX_WINDOWS`).
const MAX_WINDOWS = 10000;
const COLORS = {
  blue: "#1f6fb2", red: "#c0392b", green: "#1d7a46", orange: "#d9822b",
  purple: "#7b4bb3", grey: "#7a8794", band: "rgba(31,111,178,0.15)", redBand: "rgba(192,57,43,0.12)",
};

const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  stats: null,
  socket: null,
  reconnectDelay: 1000,
  render: 0,
  charts: [],
  page: null, // the current page's live hooks: { onStats, onEvent }
  refreshTimer: null,
};

// ---------------------------------------------------------------------------------------------
// Small helpers: DOM, formatting, API.

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);
/// Replaces a node's children, skipping `null` and `false` as `el` does.
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}
const picosToUsd = (picos) => Number(picos || 0) / 1e12;

function usd(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value === 0) return "$0";
  const magnitude = Math.abs(value);
  const digits = magnitude >= 100 ? 0 : magnitude >= 1 ? 2 : magnitude >= 0.01 ? 4 : 6;
  return (value < 0 ? "−$" : "$") + magnitude.toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
}
/// Dollars on a chart's axis: two significant digits below a dollar, so ticks stay short.
function usdAxis(value) {
  if (value === null || !Number.isFinite(value)) return "";
  if (value === 0) return "$0";
  const magnitude = Math.abs(value);
  const text = magnitude >= 1 ? magnitude.toLocaleString("en-US", { maximumFractionDigits: 2 }) : String(Number(magnitude.toPrecision(2)));
  return (value < 0 ? "−$" : "$") + text;
}
const count = (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US"));
function pct(value, digits = 2) {
  return value === null || value === undefined || !Number.isFinite(value) ? "–" : (100 * value).toFixed(digits) + " %";
}
function ms(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value >= 10000 ? (value / 1000).toFixed(1) + " s" : value.toFixed(value >= 100 ? 0 : 1) + " ms";
}
function number(value, digits = 4) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value.toPrecision(digits)).toLocaleString("en-US", { maximumSignificantDigits: digits });
}
const time = (ms_) => (ms_ ? new Date(ms_).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–");
function badge(text, kind) {
  return el("span", { class: "badge " + (kind || "") }, text);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = "Bearer " + session.token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: "no-store",
  });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.error && body.error.message) || text || response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

/// The message shown where a section's data could not be read.
function failure(error, what) {
  if (error instanceof ApiError && error.status === 401) {
    showLogin("Your key was refused: " + error.message);
  }
  if (error instanceof ApiError && error.status === 403) {
    return el("div", { class: "notice" },
      el("strong", {}, what + " needs the admin token. "),
      "The gateway said: " + error.message);
  }
  return el("div", { class: "notice error" }, `${what}: ${error.message}`);
}

// ---------------------------------------------------------------------------------------------
// Charts (uPlot).

/// Destroys the charts drawn inside `root` (each kept on its container as `chart`).
function destroyCharts(root) {
  for (const container of root.querySelectorAll(".chart")) {
    if (container.chart) container.chart.destroy();
    container.chart = null;
  }
}

function chartWidth(container) {
  return Math.max(260, Math.floor(container.getBoundingClientRect().width) || 600);
}

/// A uPlot chart in `container`, resized with it. `data[0]` is x (seconds for time axes).
function plot(container, options, data) {
  const chart = new uPlot({
    width: chartWidth(container),
    height: options.height || 220,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    ...options,
  }, data, container);
  const observer = new ResizeObserver(() => {
    const width = chartWidth(container);
    if (Math.abs(width - chart.width) > 4) chart.setSize({ width, height: chart.height });
  });
  observer.observe(container);
  const destroy = chart.destroy.bind(chart);
  chart.destroy = () => {
    observer.disconnect();
    destroy();
  };
  container.chart = chart;
  return chart;
}

const line = (label, stroke, extra = {}) => ({ label, stroke, width: 2, points: { show: false }, ...extra });
const valueAxis = (formatter, extra = {}) => ({
  size: 70, values: (_, ticks) => ticks.map(formatter), ...extra,
});

/// Window rows (sorted) made dense: windows without traffic get `empty(start)`.
function dense(rows, fromMs, toMs, windowMs, empty) {
  if (!rows.length) return [];
  const offset = ((rows[0].window_start_ms % windowMs) + windowMs) % windowMs;
  let start = Math.floor((fromMs - offset) / windowMs) * windowMs + offset;
  const byStart = new Map(rows.map((row) => [row.window_start_ms, row]));
  const out = [];
  for (; start < toMs && out.length <= MAX_WINDOWS; start += windowMs) {
    out.push(byStart.get(start) || empty(start));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Session: sign-in and the live stream.

function showLogin(message) {
  const dialog = $("#login");
  const error = $("#login-error");
  error.hidden = !message;
  error.textContent = message || "";
  if (!dialog.open) dialog.showModal();
  $("#token").focus();
}

function signIn(token) {
  session.token = token || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  $("#login").close();
  connectStream(true);
  route();
}

function connectStream(restart) {
  if (session.socket) {
    if (!restart) return;
    session.socket.onclose = null;
    session.socket.close();
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = session.token ? "?token=" + encodeURIComponent(session.token) : "";
  const socket = new WebSocket(`${scheme}//${location.host}/api/stream${query}`);
  session.socket = socket;
  const live = $("#live");
  socket.onopen = () => {
    session.reconnectDelay = 1000;
    live.className = "live on";
    live.title = "Live stream: connected";
  };
  socket.onmessage = (message) => {
    let update;
    try {
      update = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    if (update.type === "stats") {
      session.stats = update.stats;
      $("#server-time").textContent = "Gateway clock: " + time(update.stats.now_ms);
      if (session.page && session.page.onStats) session.page.onStats(update.stats);
    } else if (update.type === "event") {
      if (session.page && session.page.onEvent) session.page.onEvent(update);
    }
  };
  socket.onclose = () => {
    live.className = "live off";
    live.title = "Live stream: reconnecting";
    session.socket = null;
    setTimeout(() => connectStream(false), session.reconnectDelay);
    session.reconnectDelay = Math.min(session.reconnectDelay * 2, 30000);
  };
}

/// Re-renders the page once after a burst of loop events (a cycle writes many at once).
function refreshSoon() {
  if (session.refreshTimer) return;
  session.refreshTimer = setTimeout(() => {
    session.refreshTimer = null;
    route();
  }, 1000);
}

/// The series that stands for "all traffic the caller may see": the total, or for a client
/// key its tenant's series (the only one the API gives it).
function liveSeries(stats) {
  if (!stats || !stats.series.length) return null;
  return stats.series.find((series) => series.dimension === "total") || stats.series[0];
}

// ---------------------------------------------------------------------------------------------
// Overview.

async function renderOverview(view) {
  const stats = await api("/api/stats");
  session.stats = stats;
  const now = stats.now_ms;
  const usageOf = (range) => api(`/api/usage?group_by=total&from_ms=${now - range.span}&to_ms=${now + 1}&window_ms=${range.window}`);
  // The range the user chose, else the shortest that holds the last day's traffic.
  let rangeKey = RANGES[localStorage.getItem(RANGE_KEY)] ? localStorage.getItem(RANGE_KEY) : null;
  let usage = null;
  if (!rangeKey) {
    usage = await usageOf(RANGES["24h"]);
    const active = usage.rows.filter((row) => row.count > 0).map((row) => row.window_start_ms);
    const first = active.length ? Math.min(...active) : now - DAY;
    // A window's start at or after the range's start: all of its traffic is inside the range.
    rangeKey = ["1h", "6h", "24h"].find((key) => first >= now - RANGES[key].span) || "24h";
    if (rangeKey !== "24h") usage = null;
  }
  const range = RANGES[rangeKey];
  const from = now - range.span;
  if (!usage) usage = await usageOf(range);
  const rows = dense(usage.rows.slice().sort((a, b) => a.window_start_ms - b.window_start_ms),
    from, now + 1, range.window, (start) => ({
      window_start_ms: start, count: 0, errors: 0, cache_hits: 0, cost: 0, saved_cost: 0,
      latency_mean_ms: null, latency_p50_ms: null, latency_p95_ms: null, latency_p99_ms: null,
    }));
  const totals = rows.reduce((sum, row) => {
    sum.requests += row.count;
    sum.errors += row.errors;
    sum.hits += row.cache_hits;
    sum.saved += picosToUsd(row.saved_cost);
    if (row.count && row.latency_mean_ms !== null) {
      sum.latencyWeighted += row.latency_mean_ms * row.count;
    }
    return sum;
  }, { requests: 0, errors: 0, hits: 0, saved: 0, latencyWeighted: 0 });

  const toolbar = el("div", { class: "toolbar" },
    el("h1", {}, "Overview"),
    el("span", { class: "spacer" }),
    el("div", { class: "segmented", role: "group", "aria-label": "Range" },
      Object.entries(RANGES).map(([key, value]) => el("button", {
        type: "button", class: key === rangeKey ? "active" : "", "data-range": key,
        onclick: () => { localStorage.setItem(RANGE_KEY, key); route(); },
      }, value.label))));
  // `data-value` carries the unformatted figure (the browser test compares it with the API).
  const card = (label, value, sub, id, raw) => el("div", { class: "card", id },
    el("div", { class: "label" }, label), el("div", { class: "value", "data-value": raw === undefined ? null : String(raw) }, value),
    sub ? el("div", { class: "sub" }, sub) : null);
  const errorRate = totals.requests ? totals.errors / totals.requests : null;
  const meanLatency = totals.requests ? totals.latencyWeighted / totals.requests : null;
  const cards = el("div", { class: "cards" },
    card("Requests", count(totals.requests), `last ${range.label}`, "kpi-requests", totals.requests),
    card("Spend", usd(usage.total_cost_usd), `last ${range.label}`, "kpi-spend", usage.total_cost_usd),
    card("Saved by the cache", usd(totals.saved), `${pct(totals.requests ? totals.hits / totals.requests : null, 1)} hits`, "kpi-saved", totals.saved),
    card("Error rate", pct(errorRate), `${count(totals.errors)} errors`, "kpi-errors", errorRate),
    card("Mean latency", ms(meanLatency), `last ${range.label}`, "kpi-latency", meanLatency),
    card("Live p50 / p99", "–", "current collector window", "kpi-live"));

  const xs = rows.map((row) => row.window_start_ms / 1000);
  const windowLabel = range.window >= HOUR ? `${range.window / HOUR} h` : `${range.window / 60000} min`;
  const trafficChart = el("div", { class: "chart", id: "chart-traffic" });
  const costChart = el("div", { class: "chart", id: "chart-cost" });
  const latencyChart = el("div", { class: "chart", id: "chart-latency" });
  const liveChart = el("div", { class: "chart", id: "chart-live" });
  const forecastPanel = el("div", { class: "panel", id: "forecast" }, el("h2", {}, "Month-end projection"), el("p", { class: "muted" }, "Loading…"));
  fill(view, toolbar, cards,
    el("div", { class: "grid" },
      el("section", { class: "panel" }, el("h2", {}, `Requests and error rate per ${windowLabel}`), trafficChart),
      el("section", { class: "panel" }, el("h2", {}, `Spend and cache saving per ${windowLabel} (USD)`), costChart),
      el("section", { class: "panel" }, el("h2", {}, `Latency per ${windowLabel}`), latencyChart),
      el("section", { class: "panel" }, el("h2", {}, "Live (collector windows, updated every second)"), liveChart,
        el("p", { class: "legend-note", id: "live-note" }, "Waiting for the stream…"))),
    forecastPanel);

  if (!rows.length) {
    for (const chart of [trafficChart, costChart, latencyChart]) {
      chart.append(el("p", { class: "muted" }, `No requests in the last ${range.label}.`));
    }
  } else {
    plot(trafficChart, {
      series: [{}, line("requests", COLORS.blue, { fill: "rgba(31,111,178,0.12)", scale: "n" }),
        line("error rate", COLORS.red, { scale: "%", value: (_, v) => pct(v) })],
      axes: [{}, valueAxis((v) => count(v), { scale: "n" }), valueAxis((v) => pct(v, 1), { scale: "%", side: 1, grid: { show: false } })],
      scales: { "%": { range: (_, min, max) => [0, Math.max(max, 0.01)] } },
    }, [xs, rows.map((r) => r.count), rows.map((r) => (r.count ? r.errors / r.count : null))]);
    plot(costChart, {
      series: [{}, line("spend", COLORS.blue, { value: (_, v) => usd(v) }), line("saved by cache", COLORS.green, { value: (_, v) => usd(v) })],
      axes: [{}, valueAxis(usdAxis)],
    }, [xs, rows.map((r) => picosToUsd(r.cost)), rows.map((r) => picosToUsd(r.saved_cost))]);
    plot(latencyChart, {
      series: [{}, line("p50", COLORS.blue, { value: (_, v) => ms(v) }), line("p95", COLORS.orange, { value: (_, v) => ms(v) }),
        line("p99", COLORS.red, { value: (_, v) => ms(v) })],
      axes: [{}, valueAxis((v) => ms(v))],
    }, [xs, rows.map((r) => r.latency_p50_ms), rows.map((r) => r.latency_p95_ms), rows.map((r) => r.latency_p99_ms)]);
  }

  let live = null;
  const showLive = (liveStats) => {
    const series = liveSeries(liveStats);
    const note = $("#live-note");
    if (!series || !series.windows.length) {
      if (note) note.textContent = "No traffic in the collector's recent windows.";
      return;
    }
    const windows = series.windows.slice().reverse();
    const current = series.windows.find((w) => w.window_start_ms === liveStats.current_window_start_ms);
    const kpi = $("#kpi-live .value");
    if (kpi) {
      kpi.textContent = current
        ? `${ms(current.latency_ms.p50).replace(" ms", "")} / ${ms(current.latency_ms.p99)}`
        : "no traffic now";
    }
    if (note) {
      note.textContent = current
        ? `Current ${liveStats.window_ms / 1000} s window: ${count(current.count)} requests, ${pct(current.error_rate)} errors, ${usd(current.cost_usd)} spent.`
        : `No request in the current ${liveStats.window_ms / 1000} s window.`;
    }
    const data = [windows.map((w) => w.window_start_ms / 1000), windows.map((w) => w.count), windows.map((w) => w.latency_ms.p99)];
    if (live) live.setData(data);
    else {
      live = plot(liveChart, {
        height: 180,
        series: [{}, line("requests", COLORS.blue, { scale: "n" }), line("p99", COLORS.red, { scale: "ms", value: (_, v) => ms(v) })],
        axes: [{}, valueAxis((v) => count(v), { scale: "n" }), valueAxis((v) => ms(v), { scale: "ms", side: 1, grid: { show: false } })],
      }, data);
    }
  };
  showLive(stats);
  view.hooks = { onStats: showLive };
  await renderForecast(forecastPanel, now);
}

/// The month's spend so far plus the forecast of the rest of the month, with the forecast's
/// 95 % interval of that rest (`horizon_total`, from the fitted model's error covariance).
async function renderForecast(panel, now) {
  const date = new Date(now);
  const monthStart = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
  const monthEnd = Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
  const title = el("h2", {}, `Month-end projection (${date.toLocaleString("en-US", { month: "long", year: "numeric", timeZone: "UTC" })})`);
  try {
    const month = await api(`/api/usage?group_by=total&from_ms=${monthStart}&to_ms=${now + 1}&window_ms=${DAY}`);
    const week = await api(`/api/usage?group_by=total&from_ms=${now - 7 * DAY}&to_ms=${now + 1}&window_ms=${HOUR}`);
    const first = week.rows.filter((r) => r.count > 0).map((r) => r.window_start_ms).sort((a, b) => a - b)[0];
    if (first === undefined) {
      fill(panel, title, el("p", { class: "muted" }, "No traffic in the last 7 days to forecast from."));
      return;
    }
    // The coarsest window that still gives the fit 24 points of history (the finest, one
    // minute, for a short history). The API forecasts at most MAX_WINDOWS ahead; the model is
    // only trusted as far ahead as its history anyway (below).
    const history = now - first + HOUR;
    const remaining = Math.max(monthEnd - now, 1);
    const candidates = [HOUR, 15 * 60000, 5 * 60000, 60000];
    const windowMs = candidates.find((w) => history / w >= 24) || 60000;
    const horizon = Math.max(1, Math.ceil(remaining / windowMs));
    const asked = Math.min(horizon, MAX_WINDOWS);
    const forecast = await api(`/api/forecast?window_ms=${windowMs}&horizon=${asked}&history_ms=${Math.min(history, 7 * DAY)}`);
    if (forecast.not_enough_history) {
      const { windows, needed } = forecast.not_enough_history;
      fill(panel, title, el("p", { class: "muted" },
        `Not enough history to forecast yet: ${windows} complete window(s) of ${windowMs / 60000} min since the first call, ${needed} needed.`));
      return;
    }
    const spent = month.total_cost_usd;
    const rest = forecast.horizon_total;
    // The model's interval is trusted no further ahead than the history it was fitted on: a
    // trend fitted on a few hours says little about the next weeks (and can point below zero).
    // Beyond that, the projection is the history's mean rate, without an interval.
    const fitted = forecast.history.length;
    const trusted = fitted >= horizon;
    const meanRate = forecast.history.reduce((sum, value) => sum + value, 0) / Math.max(fitted, 1);
    const restUsd = trusted ? Math.max(0, rest.projected_usd) : meanRate * horizon;
    const projected = spent + restUsd;
    const lower = trusted ? spent + Math.max(0, rest.lower_usd) : null;
    const upper = trusted ? spent + Math.max(0, rest.upper_usd) : null;
    // Chart: the fitted history and as many windows ahead (at least six).
    const shown = Math.min(horizon, Math.max(forecast.history.length, 6));
    const start = now - (forecast.history.length - 1) * windowMs;
    const xs = [];
    const actual = [];
    const mean = [];
    const low = [];
    const high = [];
    forecast.history.forEach((value, index) => {
      xs.push((start + index * windowMs) / 1000);
      actual.push(value);
      mean.push(null);
      low.push(null);
      high.push(null);
    });
    // The forecast starts from the last observed window, so the two lines meet.
    if (actual.length) {
      const last = actual.length - 1;
      mean[last] = actual[last];
      low[last] = actual[last];
      high[last] = actual[last];
    }
    for (let index = 0; index < shown; index += 1) {
      xs.push((now + (index + 1) * windowMs) / 1000);
      actual.push(null);
      mean.push(Math.max(0, forecast.forecast.mean[index]));
      low.push(Math.max(0, forecast.forecast.lower[index]));
      high.push(Math.max(0, forecast.forecast.upper[index]));
    }
    const windowLabel = windowMs >= HOUR ? `${windowMs / HOUR} h` : `${windowMs / 60000} min`;
    const chart = el("div", { class: "chart", id: "chart-forecast" });
    fill(panel, title,
      el("div", { class: "cards" },
        el("div", { class: "card", id: "kpi-projection" }, el("div", { class: "label" }, "Projected month total"),
          el("div", { class: "value", "data-value": String(projected), "data-spent": String(spent) }, usd(projected)),
          el("div", { class: "sub" }, trusted ? `95 % interval ${usd(lower)} – ${usd(upper)}` : "at the recent mean rate (no interval)")),
        el("div", { class: "card" }, el("div", { class: "label" }, "Spent this month"), el("div", { class: "value" }, usd(spent)),
          el("div", { class: "sub" }, `until ${time(now)}`)),
        el("div", { class: "card" }, el("div", { class: "label" }, "Rest of the month"), el("div", { class: "value" }, usd(restUsd)),
          el("div", { class: "sub" }, `${count(horizon)} windows of ${windowLabel}`))),
      chart,
      el("p", { class: "legend-note", id: "forecast-basis" },
        `Model: ${forecast.method}, fitted on ${fitted} windows of ${windowLabel}; the band is each window's 95 % forecast interval (drawn from 0). `
        + (trusted ? "The month's interval is that of the sum, not the sum of the bands."
          : `The month-end figure uses the mean rate of those ${fitted} windows: the model's interval is not used ${count(horizon)} windows ahead of ${fitted} windows of history.`)));
    plot(chart, {
      series: [{}, line("cost", COLORS.blue, { value: (_, v) => usd(v) }),
        line("forecast", COLORS.purple, { dash: [6, 4], value: (_, v) => usd(v) }),
        line("lower 95 %", "rgba(123,75,179,0.4)", { width: 1, value: (_, v) => usd(v) }),
        line("upper 95 %", "rgba(123,75,179,0.4)", { width: 1, value: (_, v) => usd(v) })],
      bands: [{ series: [4, 3], fill: "rgba(123,75,179,0.14)" }],
      axes: [{}, valueAxis(usdAxis)],
    }, [xs, actual, mean, low, high]);
  } catch (error) {
    fill(panel, title, failure(error, "The forecast"));
  }
}

// ---------------------------------------------------------------------------------------------
// Experiments.

const metricName = (metric) => (typeof metric === "string" ? metric
  : metric.kind === "quality" ? `quality:${metric.name}` : metric.kind === "slow_share" ? `slow share over ${metric.threshold_ms} ms` : metric.kind);
const lowerIsBetter = (key) => !String(key).startsWith("quality:");

function statusBadge(status) {
  const kind = { running: "info", concluded: "good", stopped: "warn", paused: "warn" }[status.state] || "";
  if (status.state === "concluded" && status.outcome) {
    return status.outcome.verdict === "adopted" ? badge(`adopted ${status.outcome.arm}`, "good") : badge("rejected", "bad");
  }
  return badge(status.state, kind);
}

function actionText(decision) {
  if (!decision) return "no decision yet";
  switch (decision.action) {
    case "adopt": return `adopt ${decision.arm}`;
    case "stop_arm": return `stop ${decision.arm}`;
    default: return decision.action;
  }
}

async function renderExperiments(view) {
  let list;
  let adoptions;
  try {
    [list, adoptions] = await Promise.all([api("/api/experiments"), api("/api/adoptions")]);
  } catch (error) {
    fill(view, el("h1", {}, "Experiments"), failure(error, "Experiments"));
    return;
  }
  const pending = new Set(adoptions.pending_approval.map((p) => p.experiment_id));
  const experiments = list.experiments.slice().sort((a, b) => (b.started_ms || b.created_ms) - (a.started_ms || a.created_ms));
  const running = experiments.filter((e) => e.status.state === "running").length;
  const rows = experiments.map((experiment) => el("tr", {
    class: "clickable", "data-id": experiment.spec.id,
    onclick: () => { location.hash = "#/experiments/" + encodeURIComponent(experiment.spec.id); },
  },
  el("td", {}, el("a", { href: "#/experiments/" + encodeURIComponent(experiment.spec.id) }, experiment.spec.name),
    el("div", { class: "small muted" }, experiment.spec.id)),
  el("td", {}, statusBadge(experiment.status), pending.has(experiment.spec.id) ? [" ", badge("awaiting approval", "warn")] : null),
  el("td", { class: "num" }, experiment.arms.map((arm) => el("div", {}, `${arm.name}: ${count(arm.requests)}`))),
  el("td", { class: "hide-narrow" }, metricName(experiment.spec.primary)),
  el("td", {}, el("strong", {}, actionText(experiment.last_decision)),
    experiment.last_decision ? el("div", { class: "small muted" }, experiment.last_decision.reason) : null),
  el("td", { class: "hide-narrow small" }, time(experiment.started_ms))));
  fill(view, 
    el("div", { class: "toolbar" }, el("h1", {}, "Experiments"), el("span", { class: "spacer" }),
      el("span", { class: "muted" }, `${experiments.length} experiments, ${running} running, ${pending.size} awaiting approval`)),
    el("section", { class: "panel" }, experiments.length
      ? el("div", { class: "table-wrap" }, el("table", { id: "experiments-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Experiment"), el("th", {}, "Status"), el("th", { class: "num" }, "Requests per arm"),
          el("th", { class: "hide-narrow" }, "Primary metric"), el("th", {}, "Latest decision"), el("th", { class: "hide-narrow" }, "Started"))),
        el("tbody", {}, rows)))
      : el("p", { class: "muted" }, "No experiment yet: the optimizer starts them from its proposals (POST /api/optimize runs a cycle).")));
  view.hooks = { onEvent: refreshSoon };
}

/// One chart of an interval over time with the decision boundary: one value, or one per point
/// (a guardrail's allowed degradation can change as the control's mean moves).
function intervalChart(container, points, boundary, boundaryLabel, format) {
  const boundaries = Array.isArray(boundary) ? boundary : points.map(() => boundary);
  const xs = points.map((p) => p.at_ms / 1000);
  plot(container, {
    height: 200,
    series: [{}, line("estimate", COLORS.blue, { value: (_, v) => format(v) }),
      line("lower", "rgba(31,111,178,0.45)", { width: 1, value: (_, v) => format(v) }),
      line("upper", "rgba(31,111,178,0.45)", { width: 1, value: (_, v) => format(v) }),
      line(boundaryLabel, COLORS.red, { dash: [5, 4], width: 1.5, value: (_, v) => format(v) })],
    bands: [{ series: [3, 2], fill: COLORS.band }],
    axes: [{}, valueAxis(format === usd ? usdAxis : format, { size: 80 })],
  }, [xs, points.map((p) => (p.interval ? p.interval.estimate : null)), points.map((p) => (p.interval ? p.interval.lower : null)),
    points.map((p) => (p.interval ? p.interval.upper : null)), boundaries]);
}

function formatFor(key) {
  if (key === "cost_usd") return usd;
  if (key === "latency_ms" || key === "ttft_ms") return (v) => ms(v);
  if (/share|rate/.test(key)) return (v) => pct(v);
  return (v) => number(v);
}

function adminButton(label, confirmText, path, body, danger) {
  const result = el("span", { class: "action-result" });
  const button = el("button", {
    type: "button", class: "action" + (danger ? " danger" : ""),
    onclick: async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      button.disabled = true;
      result.textContent = "…";
      result.className = "action-result muted";
      try {
        await api(path, { method: "POST", body });
        result.textContent = "done";
        result.className = "action-result";
        refreshSoon();
      } catch (error) {
        result.textContent = error.message;
        result.className = "action-result error";
        button.disabled = false;
      }
    },
  }, label);
  return el("span", {}, button, result);
}

async function renderExperiment(view, id) {
  let experiment;
  let adoptions;
  try {
    [experiment, adoptions] = await Promise.all([api("/api/experiments/" + encodeURIComponent(id)), api("/api/adoptions")]);
  } catch (error) {
    fill(view, el("p", {}, el("a", { href: "#/experiments" }, "← Experiments")), failure(error, "This experiment"));
    return;
  }
  const spec = experiment.spec;
  const primaryKey = metricName(spec.primary);
  const format = formatFor(primaryKey);
  const decision = experiment.last_decision;
  const awaiting = adoptions.pending_approval.find((p) => p.experiment_id === spec.id);
  const active = experiment.status.state === "running" || experiment.status.state === "paused";
  const controls = el("div", { class: "toolbar" },
    active ? adminButton("Stop experiment", `Stop ${spec.id}? Its arms stop receiving traffic.`,
      `/api/experiments/${encodeURIComponent(spec.id)}/stop`, { reason: "stopped from the dashboard" }, true) : null,
    awaiting ? adminButton(`Approve ${awaiting.arm}`, `Adopt ${awaiting.arm} of ${spec.id} into the live policy?`,
      `/api/experiments/${encodeURIComponent(spec.id)}/approve`, undefined, false) : null);

  const primaryMean = (arm) => {
    const entry = arm.metrics.find((m) => m.metric === primaryKey);
    return entry && entry.moments.count ? format(entry.moments.mean) : "–";
  };
  const arms = el("table", { id: "arms-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "Arm"), el("th", {}, "Change"), el("th", {}, "Status"), el("th", { class: "num" }, "Weight"),
      el("th", { class: "num" }, "Requests"), el("th", { class: "num" }, "Errors"), el("th", { class: "num" }, "Cost"),
      el("th", { class: "num" }, `Mean ${primaryKey}`))),
    el("tbody", {}, experiment.arms.map((arm, index) => el("tr", {},
      el("td", {}, arm.name), el("td", { class: "small" }, changeText(spec.arms[index] ? spec.arms[index].change : {})),
      el("td", {}, arm.status.state === "active" ? badge("active", "info") : badge("stopped", "bad"),
        arm.status.reason ? el("div", { class: "small muted" }, arm.status.reason) : null),
      el("td", { class: "num" }, number(arm.weight, 3)), el("td", { class: "num" }, count(arm.requests)),
      el("td", { class: "num" }, count(arm.errors)), el("td", { class: "num" }, usd(picosToUsd(arm.cost))),
      el("td", { class: "num" }, primaryMean(arm))))));

  // The primary metric's interval over time, one chart per treatment, from the history.
  const history = experiment.history || [];
  const treatments = experiment.arms.slice(1).map((arm) => arm.name);
  const primarySections = treatments.map((arm) => {
    const points = history.map((point) => {
      const comparison = point.primary.find((c) => c.arm === arm);
      return { at_ms: point.at_ms, interval: comparison ? comparison.difference : null };
    }).filter((p) => p.interval);
    const latest = decision && decision.primary.find((c) => c.arm === arm);
    const better = lowerIsBetter(primaryKey) ? "below" : "above";
    const chart = el("div", { class: "chart", id: "chart-primary-" + arm });
    const section = el("section", { class: "panel" },
      el("h2", {}, `${arm} − control: ${primaryKey}`),
      latest ? el("p", { class: "small" }, `Latest: ${format(latest.difference ? latest.difference.estimate : null)} `
        + (latest.difference ? `(interval ${format(latest.difference.lower)} to ${format(latest.difference.upper)}, α = ${number(latest.alpha, 3)}) ` : "")
        + `on ${count(latest.treatment_count)} vs ${count(latest.control_count)} samples: `, verdictBadge(latest.verdict)) : null,
      chart,
      el("p", { class: "legend-note" }, `Anytime-valid interval of the difference at each evaluation. The treatment wins once the whole interval is ${better} 0 (the boundary) and every guardrail shows non-inferiority.`));
    if (points.length) intervalChart(chart, points, 0, "boundary (no difference)", format);
    else chart.append(el("p", { class: "muted" }, "No interval yet: too few samples in an arm."));
    return section;
  });

  // Guardrails: the degradation interval over time against the allowed degradation.
  const guardrailKeys = [];
  for (const point of history) {
    for (const check of point.guardrails) {
      const key = check.arm + "\u0000" + check.metric;
      if (!guardrailKeys.includes(key)) guardrailKeys.push(key);
    }
  }
  const guardrailSections = guardrailKeys.map((key) => {
    const [arm, metric] = key.split("\u0000");
    const points = history.map((point) => {
      const check = point.guardrails.find((g) => g.arm === arm && g.metric === metric);
      return check ? { at_ms: point.at_ms, interval: check.degradation, allowed: check.allowed_degradation, verdict: check.verdict } : null;
    }).filter((p) => p && p.interval);
    const latest = decision && decision.guardrails.find((g) => g.arm === arm && g.metric === metric);
    const metricFormat = formatFor(metric);
    const chart = el("div", { class: "chart", id: `chart-guardrail-${arm}-${metric}` });
    const section = el("section", { class: "panel guardrail" },
      el("h2", {}, `Guardrail ${metric} (${arm})`),
      latest ? el("p", { class: "small" }, "Latest: ", verdictBadge(latest.verdict),
        ` degradation ${metricFormat(latest.degradation ? latest.degradation.estimate : null)}, allowed ${metricFormat(latest.allowed_degradation)}`) : null,
      chart,
      el("p", { class: "legend-note" }, "How much worse the treatment is (positive = worse). Breached when the whole interval is above the allowed degradation; non-inferior when it is all below."));
    if (points.length) intervalChart(chart, points, points.map((p) => p.allowed), "allowed degradation", metricFormat);
    else chart.append(el("p", { class: "muted" }, "No interval yet."));
    return section;
  });

  fill(view, 
    el("p", {}, el("a", { href: "#/experiments" }, "← Experiments")),
    el("div", { class: "toolbar" }, el("h1", {}, spec.name), statusBadge(experiment.status), awaiting ? badge("awaiting approval", "warn") : null),
    controls,
    el("div", { class: "grid" },
      el("section", { class: "panel" }, el("h2", {}, "Experiment"), el("dl", { class: "facts" },
        el("dt", {}, "Id"), el("dd", {}, spec.id),
        el("dt", {}, "Hypothesis"), el("dd", {}, spec.hypothesis || "–"),
        el("dt", {}, "Scope"), el("dd", { class: "small" }, JSON.stringify(spec.scope)),
        el("dt", {}, "Primary metric"), el("dd", {}, primaryKey),
        el("dt", {}, "Guardrails"), el("dd", {}, spec.guardrails.map((g) => metricName(g.metric)).join(", ") || "none"),
        el("dt", {}, "α, min samples"), el("dd", {}, `${spec.alpha}, ${count(spec.min_samples_per_arm)} per arm`),
        el("dt", {}, "Started"), el("dd", {}, time(experiment.started_ms)),
        el("dt", {}, "Evaluations"), el("dd", {}, `${count(experiment.evaluations)} (${history.length} kept in the history)`))),
      el("section", { class: "panel", id: "decision" }, el("h2", {}, "Decision"),
        decision ? [el("p", {}, el("strong", {}, actionText(decision)), " at ", time(decision.at_ms)), el("p", {}, decision.reason)]
          : el("p", { class: "muted" }, "No decision yet."),
        experiment.status.reason ? el("p", { class: "small muted" }, "Status: " + experiment.status.reason) : null)),
    el("section", { class: "panel" }, el("h2", {}, "Arms"), el("div", { class: "table-wrap" }, arms)),
    el("div", { class: "grid" }, primarySections, guardrailSections),
    el("section", { class: "panel" }, el("h2", {}, "Events"),
      el("ul", { class: "events" }, experiment.events.slice().reverse().map((event) => el("li", {}, el("span", { class: "small muted" }, time(event.at_ms)), " ", event.what)))));
  view.hooks = { onEvent: (event) => { if (event.subject === spec.id) refreshSoon(); } };
}

function verdictBadge(verdict) {
  const kind = { better: "good", non_inferior: "good", worse: "bad", breached: "bad", inconclusive: "info" }[verdict] || "";
  return badge(String(verdict).replace(/_/g, " "), kind);
}

function changeText(change) {
  const parts = [];
  if (change.model) parts.push(`model → ${change.model}`);
  if (change.response_cache !== undefined) parts.push(`response cache ${change.response_cache ? "on" : "off"}`);
  if (change.max_tokens_cap !== undefined) parts.push(`max_tokens ≤ ${change.max_tokens_cap}`);
  if (change.timeout_ms !== undefined) parts.push(`timeout ${change.timeout_ms} ms`);
  if (change.hedge_after_ms !== undefined) parts.push(`hedge after ${change.hedge_after_ms} ms`);
  if (change.prompt_cache !== undefined) parts.push(`prompt cache (${change.prompt_cache} lifetime)`);
  return parts.join(", ") || "as today";
}

// ---------------------------------------------------------------------------------------------
// Proposals, adoptions and the audit log.

async function renderChanges(view) {
  let proposals;
  let adoptions;
  let audit;
  try {
    [proposals, adoptions, audit] = await Promise.all([api("/api/proposals"), api("/api/adoptions"), api("/api/audit?newest=100")]);
  } catch (error) {
    fill(view, el("h1", {}, "Proposals & adoptions"), failure(error, "Proposals and adoptions"));
    return;
  }
  const inForce = adoptions.adoptions.filter((a) => !a.rolled_back);
  const measuredSaving = inForce.reduce((sum, a) => sum + (a.measurement ? a.measurement.saving_usd_per_day : 0), 0);
  const adoptionRows = adoptions.adoptions.map((adoption) => {
    const m = adoption.measurement;
    const interval = m && m.saving_interval_usd_per_day;
    return el("tr", { "data-id": adoption.experiment_id },
      el("td", {}, el("a", { href: "#/experiments/" + encodeURIComponent(adoption.experiment_id) }, adoption.experiment_id),
        el("div", { class: "small muted" }, adoption.strategy || "")),
      el("td", { class: "small" }, changeText(adoption.change)),
      el("td", { class: "small hide-narrow" }, time(adoption.adopted_ms)),
      el("td", { class: "num" }, pct(adoption.holdout_share, 0)),
      el("td", { class: "num saving", "data-value": m ? String(m.saving_usd_per_day) : null }, m ? usd(m.saving_usd_per_day) : "not measured yet",
        interval ? el("div", { class: "small muted" }, `${usd(interval[0])} to ${usd(interval[1])}`) : null),
      el("td", { class: "num hide-narrow" }, m ? `${count(m.applied_requests)} / ${count(m.held_out_requests)}` : "–"),
      el("td", {}, adoption.rolled_back
        ? [badge("rolled back", "bad"), el("div", { class: "small muted" }, `${adoption.rolled_back.cause}: ${adoption.rolled_back.reason} (${time(adoption.rolled_back.at_ms)})`)]
        : [badge("in force", "good"), " ", adminButton("Roll back", `Roll back ${adoption.experiment_id}? Its change is removed from the live policy at once.`,
          `/api/adoptions/${encodeURIComponent(adoption.experiment_id)}/rollback`, { reason: "rolled back from the dashboard" }, true)]));
  });
  const pending = adoptions.pending_approval.map((p) => el("li", {},
    el("a", { href: "#/experiments/" + encodeURIComponent(p.experiment_id) }, p.experiment_id), ` (${p.arm}): ${p.decision.reason} `,
    adminButton("Approve", `Adopt ${p.arm} of ${p.experiment_id}?`, `/api/experiments/${encodeURIComponent(p.experiment_id)}/approve`, undefined, false)));
  const proposalRows = proposals.proposals.map((p) => el("tr", {},
    el("td", {}, badge(p.strategy, "info")),
    el("td", {}, p.summary),
    el("td", { class: "num" }, usd(p.saving.usd_per_day),
      p.saving.low !== undefined && p.saving.high !== undefined ? el("div", { class: "small muted" }, `${usd(p.saving.low)} to ${usd(p.saving.high)}`) : null),
    el("td", {}, badge(p.risk, { low: "good", medium: "warn", high: "bad" }[p.risk])),
    el("td", { class: "small hide-narrow" }, p.action ? (p.experiment ? "tested as an experiment" : "applied directly") : "advice")));
  const auditRows = audit.entries.slice().reverse().map((entry) => el("tr", {},
    el("td", { class: "num" }, entry.seq), el("td", { class: "small" }, time(entry.ts_ms)),
    el("td", {}, badge(entry.kind.replace(/_/g, " "), { adopted: "good", rolled_back: "bad", rejected: "bad", arm_stopped: "warn", experiment_started: "info" }[entry.kind])),
    el("td", { class: "small" }, entry.subject),
    el("td", { class: "small hide-narrow" }, [entry.detail.reason, entry.detail.summary].find((text) => typeof text === "string") || "")));
  fill(view, 
    el("div", { class: "toolbar" }, el("h1", {}, "Proposals & adoptions")),
    el("div", { class: "cards" },
      el("div", { class: "card", id: "kpi-adopted" }, el("div", { class: "label" }, "Changes in force"), el("div", { class: "value" }, count(inForce.length)),
        el("div", { class: "sub" }, `${count(adoptions.adoptions.length - inForce.length)} rolled back`)),
      el("div", { class: "card", id: "kpi-measured" }, el("div", { class: "label" }, "Measured saving / day"), el("div", { class: "value" }, usd(measuredSaving)),
        el("div", { class: "sub" }, "against the holdouts, changes in force")),
      el("div", { class: "card" }, el("div", { class: "label" }, "Quality budget used"), el("div", { class: "value" }, pct(adoptions.quality_budget_used, 1))),
      el("div", { class: "card" }, el("div", { class: "label" }, "Proposals (last cycle)"), el("div", { class: "value" }, count(proposals.proposals.length)))),
    pending.length ? el("section", { class: "panel" }, el("h2", {}, "Awaiting approval"), el("ul", {}, pending)) : null,
    el("section", { class: "panel" }, el("h2", {}, "Adoptions"), adoptionRows.length
      ? el("div", { class: "table-wrap" }, el("table", { id: "adoptions-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Experiment"), el("th", {}, "Change"), el("th", { class: "hide-narrow" }, "Adopted"),
          el("th", { class: "num" }, "Holdout"), el("th", { class: "num" }, "Measured saving / day"), el("th", { class: "num hide-narrow" }, "Requests (applied / held out)"),
          el("th", {}, "State"))),
        el("tbody", {}, adoptionRows)))
      : el("p", { class: "muted" }, "Nothing adopted yet.")),
    el("section", { class: "panel" }, el("h2", {}, "Proposals of the last cycle"), proposalRows.length
      ? el("div", { class: "table-wrap" }, el("table", { id: "proposals-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Strategy"), el("th", {}, "Proposal"), el("th", { class: "num" }, "Saving / day (95 %)"),
          el("th", {}, "Risk"), el("th", { class: "hide-narrow" }, "How"))),
        el("tbody", {}, proposalRows)))
      : el("p", { class: "muted" }, "No proposal: no cycle has run, or it found nothing worth proposing.")),
    el("section", { class: "panel" }, el("h2", {}, "Audit log (newest first)"), auditRows.length
      ? el("div", { class: "table-wrap" }, el("table", { id: "audit-table" },
        el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Time"), el("th", {}, "Kind"), el("th", {}, "Subject"),
          el("th", { class: "hide-narrow" }, "Reason"))),
        el("tbody", {}, auditRows)))
      : el("p", { class: "muted" }, "The audit log is empty.")));
  view.hooks = { onEvent: refreshSoon };
}

// ---------------------------------------------------------------------------------------------
// Workloads.

async function renderWorkloads(view) {
  let clusters;
  try {
    clusters = await api("/api/clusters");
  } catch (error) {
    fill(view, el("h1", {}, "Workloads"), failure(error, "Workload clusters"));
    return;
  }
  const profiles = clusters.profiles.slice().sort((a, b) => b.size - a.size);
  const feature = (profile, name) => profile.mean_features[clusters.feature_names.indexOf(name)];
  const sharesChart = el("div", { class: "chart", id: "chart-clusters" });
  const silhouetteChart = el("div", { class: "chart", id: "chart-silhouette" });
  const best = clusters.silhouette_by_k.find(([k]) => k === clusters.k);
  fill(view, 
    el("div", { class: "toolbar" }, el("h1", {}, "Workloads"), el("span", { class: "spacer" }),
      el("span", { class: "muted" }, `${count(clusters.labels.length)} calls of the last day with token usage, ${clusters.k} clusters`)),
    el("section", { class: "panel" }, el("div", { class: "table-wrap" }, el("table", { id: "clusters-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Cluster"), el("th", { class: "num" }, "Requests"), el("th", { class: "num" }, "Share"),
        el("th", { class: "num" }, "Cost"), el("th", { class: "num" }, "Cost share"), el("th", { class: "num" }, "Input tokens"),
        el("th", { class: "num" }, "Output tokens"), el("th", {}, "Models"))),
      el("tbody", {}, profiles.map((p) => el("tr", {},
        el("td", {}, `#${p.cluster}`), el("td", { class: "num" }, count(p.size)), el("td", { class: "num" }, pct(p.share, 1)),
        el("td", { class: "num" }, usd(picosToUsd(p.cost))), el("td", { class: "num" }, pct(p.cost_share, 1)),
        el("td", { class: "num" }, number(Math.expm1(feature(p, "ln_input_tokens")), 3)),
        el("td", { class: "num" }, number(Math.expm1(feature(p, "ln_output_tokens")), 3)),
        el("td", { class: "small" }, Object.entries(p.models).map(([model, n]) => `${model}: ${count(n)}`).join(", "))))))),
      el("p", { class: "legend-note" }, "Clusters of the calls' shape (tokens in and out, cached share), k chosen by silhouette. "
        + "Token columns are geometric means (the clustering works on log tokens). Calls without token usage (response-cache hits, "
        + "failed calls) are not clustered.")),
    el("div", { class: "grid" },
      el("section", { class: "panel" }, el("h2", {}, "Share of requests and of cost per cluster"), sharesChart),
      el("section", { class: "panel" }, el("h2", {}, "Silhouette by number of clusters"), silhouetteChart,
        el("p", { class: "legend-note" }, best ? `k = ${clusters.k} has the best mean silhouette (${number(best[1], 3)}).` : ""))));
  // Side by side: requests left of each cluster's tick, cost right of it.
  const bars = uPlot.paths.bars({ size: [0.35, 60], align: -1 });
  const xs = profiles.map((_, index) => index);
  plot(sharesChart, {
    height: 220,
    scales: { x: { time: false, range: [-0.6, profiles.length - 0.4] }, y: { range: (_, min, max) => [0, Math.max(max, 0.01) * 1.1] } },
    series: [{ label: "cluster", value: (_, v) => (v === null || profiles[v] === undefined ? "" : `#${profiles[v].cluster}`) },
      line("requests", COLORS.blue, { paths: bars, fill: "rgba(31,111,178,0.7)", value: (_, v) => pct(v, 1) }),
      line("cost", COLORS.orange, { paths: uPlot.paths.bars({ size: [0.35, 60], align: 1 }), fill: "rgba(217,130,43,0.7)", value: (_, v) => pct(v, 1) })],
    axes: [{ values: (_, ticks) => ticks.map((t) => (Number.isInteger(t) && profiles[t] ? `#${profiles[t].cluster}` : "")), incrs: [1] },
      valueAxis((v) => pct(v, 0))],
  }, [xs, profiles.map((p) => p.share), profiles.map((p) => p.cost_share)]);
  plot(silhouetteChart, {
    height: 220,
    scales: { x: { time: false } },
    series: [{ label: "k" }, line("mean silhouette", COLORS.purple, { points: { show: true, size: 6 } })],
    axes: [{ incrs: [1] }, valueAxis((v) => number(v, 2))],
  }, [clusters.silhouette_by_k.map(([k]) => k), clusters.silhouette_by_k.map(([, s]) => s)]);
}

// ---------------------------------------------------------------------------------------------
// Router.

async function route() {
  if (!session.token && !sessionStorage.getItem(TOKEN_KEY + ".open")) {
    showLogin();
    return;
  }
  const render = ++session.render;
  const hash = location.hash || "#/overview";
  const [, page, id] = hash.split("/").map((part) => decodeURIComponent(part || ""));
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === (page || "overview"));
  }
  $("#sign-out").hidden = false;
  $("#sign-out").textContent = session.token ? "Change key" : "Sign in";
  const view = el("div", { id: "view", "data-page": page || "overview", "data-hash": hash });
  // A pending refresh is superseded by this render.
  clearTimeout(session.refreshTimer);
  session.refreshTimer = null;
  const main = $("#main");
  // Another page: say it is loading. The same page (a refresh): keep showing it until the new
  // one is ready.
  if (hash !== session.shownHash) {
    const old = main.querySelector("#view");
    if (old) destroyCharts(old);
    session.page = null;
    main.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    main.dataset.ready = "false";
    session.shownHash = null;
  }
  const renderers = {
    overview: renderOverview, experiments: (v) => (id ? renderExperiment(v, id) : renderExperiments(v)),
    changes: renderChanges, workloads: renderWorkloads,
  };
  const renderer = renderers[page] || renderOverview;
  // Rendered off-screen first, then swapped in: a page never shows half its sections.
  const staging = el("div", { style: "position:absolute;left:-10000px;width:" + main.clientWidth + "px" });
  document.body.append(staging);
  staging.append(view);
  try {
    await renderer(view);
  } catch (error) {
    fill(view, failure(error, "This page"));
  }
  staging.remove();
  if (render !== session.render) {
    destroyCharts(view);
    return;
  }
  const old = main.querySelector("#view");
  if (old) destroyCharts(old);
  main.replaceChildren(view);
  session.page = view.hooks || null;
  session.shownHash = hash;
  for (const container of view.querySelectorAll(".chart")) {
    if (container.chart) container.chart.setSize({ width: chartWidth(container), height: container.chart.height });
  }
  main.dataset.ready = "true";
  document.title = `${(view.querySelector("h1") || { textContent: "Dashboard" }).textContent} · LLM Auto-Optimizer`;
}

function start() {
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (token) {
      sessionStorage.removeItem(TOKEN_KEY + ".open");
      signIn(token);
    }
  });
  $("#login-form").append(el("p", { class: "small muted" }, "A gateway without keys (open mode, on loopback) can be read ",
    el("a", {
      href: "#", id: "without-key",
      onclick: (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY + ".open", "1");
        signIn(null);
      },
    }, "without a key"), "."));
  $("#sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY + ".open");
    showLogin();
  });
  window.addEventListener("hashchange", route);
  if (session.token || sessionStorage.getItem(TOKEN_KEY + ".open")) connectStream(false);
  route();
}

document.addEventListener("DOMContentLoaded", start);
