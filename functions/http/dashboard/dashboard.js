// The inferq dashboard: reads the JSON API with the caller's key and draws it with Chart.js (vendored).
// The key comes from the URL fragment (#key=..., never sent to a server) or the key field, is kept in this tab's
// sessionStorage and goes out only as the `api-key` header. Text goes into the page with textContent, never as HTML.
// Every figure also lands in the DOM as text and data-* attributes (what tests and screen readers read).
"use strict";

(() => {
  const KEY_STORE = "inferq-dashboard-key";
  const HOUR = 3600 * 1000;
  const DAY = 24 * HOUR;
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let tenant = null; // the tenant the figures are for; an admin key picks it

  // --- exact decimals (money arrives as decimal strings; floats would round) ------------------------------------
  const dec = (text) => {
    const [whole, fraction = ""] = String(text).split(".");
    return { units: BigInt(whole + fraction), scale: fraction.length };
  };
  const ZERO = dec("0");
  const add = (a, b) => {
    const scale = Math.max(a.scale, b.scale);
    const up = (d) => d.units * 10n ** BigInt(scale - d.scale);
    return { units: up(a) + up(b), scale };
  };
  const decText = (d) => {
    const digits = (d.units < 0n ? -d.units : d.units).toString().padStart(d.scale + 1, "0");
    let text = d.scale ? `${digits.slice(0, -d.scale)}.${digits.slice(-d.scale)}` : digits;
    if (d.scale) text = text.replace(/0+$/, "").replace(/\.$/, "");
    return (d.units < 0n ? "-" : "") + text;
  };

  // --- the API ---------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, params = {}) {
    const url = new URL(path, location.href); // relative to /dashboard: this server, under whatever prefix
    for (const [name, value] of Object.entries(params)) if (value != null) url.searchParams.set(name, value);
    let response;
    try {
      response = await fetch(url, {
        headers: { "api-key": sessionStorage.getItem(KEY_STORE) || "", accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, "Unreachable", `The inferq API at ${url.origin} did not answer (${error.message}). Is the host running?`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error;
      const detail = body && body.detail ? body.detail.map((d) => d.msg).join("; ") : response.statusText;
      throw new ApiError(response.status, error ? error.code : `HTTP ${response.status}`, error ? error.message : detail);
    }
    if (body === null) throw new ApiError(response.status, "BadResponse", `${url.pathname} did not answer with JSON.`);
    return body;
  }

  // --- page state ------------------------------------------------------------------------------------------------
  function setState(state) {
    document.body.dataset.state = state;
  }

  function showError(error) {
    const message = $("message");
    if (error instanceof ApiError && error.status === 401) {
      message.textContent = `The API key was refused (401 ${error.code}): ${error.message} Enter another key.`;
      sessionStorage.removeItem(KEY_STORE);
      askForKey();
    } else if (error instanceof ApiError && error.status === 0) {
      message.textContent = error.message;
    } else if (error instanceof ApiError) {
      message.textContent = `The API answered ${error.status} ${error.code}: ${error.message}`;
    } else {
      message.textContent = `The dashboard failed: ${error.message}`;
    }
    message.dataset.status = error instanceof ApiError ? String(error.status) : "";
    message.hidden = false;
    setState("error");
  }

  function askForKey() {
    $("content").hidden = true;
    $("forget").hidden = true;
    $("tenant-picker").hidden = true;
    $("who").textContent = "";
    $("key-form").hidden = false;
    $("key").focus();
    if (document.body.dataset.state !== "error") setState("needs-key");
  }

  function fragment() {
    return new URLSearchParams(location.hash.slice(1));
  }

  function keepFragment(params) {
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }

  // --- helpers for charts and tables -----------------------------------------------------------------------------
  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    const options = config.options || {};
    config.options = {
      animation: false,
      maintainAspectRatio: false,
      ...options,
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } }, ...(options.plugins || {}) },
    };
    charts[id] = new Chart($(id), config);
  }

  function row(cells, attrs = {}) {
    const tr = document.createElement("tr");
    for (const [name, value] of Object.entries(attrs)) tr.dataset[name] = value;
    for (const cell of cells) {
      const td = document.createElement("td");
      const [text, numeric] = Array.isArray(cell) ? cell : [cell, false];
      td.textContent = text == null ? "" : String(text);
      if (numeric) td.className = "num";
      tr.append(td);
    }
    return tr;
  }

  const money = { ticks: { callback: (v) => Number(v).toLocaleString("en", { maximumSignificantDigits: 3 }) } };
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const pad = (n) => String(n).padStart(2, "0");
  const label = (ms, granularity) => {
    const d = new Date(ms);
    const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    return granularity === "hour" ? `${day} ${pad(d.getUTCHours())}:00` : day;
  };

  // --- usage: tokens and cost per period, by deployment and meter ------------------------------------------------
  function periods(granularity, now) {
    const end = granularity === "hour" ? Math.floor(now / HOUR) * HOUR : Math.floor(now / DAY) * DAY;
    const step = granularity === "hour" ? HOUR : DAY;
    const count = granularity === "hour" ? 48 : 31;
    return Array.from({ length: count }, (_, i) => end - (count - 1 - i) * step);
  }

  function renderUsage(usage, starts, granularity) {
    const index = new Map(starts.map((ms, i) => [ms, i]));
    const series = new Map(); // "deployment · meter" → counts, costs per period and exact totals
    for (const item of usage.items) {
      const name = `${item.deployment} · ${item.meter}`;
      if (!series.has(name)) {
        series.set(name, {
          deployment: item.deployment, meter: item.meter, unit: item.unit, requests: "requests" in item,
          counts: starts.map(() => 0), costs: starts.map(() => 0), count: 0, quantity: ZERO, cost: ZERO,
        });
      }
      const s = series.get(name);
      const count = item.tokens ?? item.requests;
      const i = index.get(Date.parse(item.period_start));
      if (i !== undefined) {
        s.counts[i] += count;
        s.costs[i] += Number(item.cost);
      }
      s.count += count;
      s.quantity = add(s.quantity, dec(item.quantity));
      s.cost = add(s.cost, dec(item.cost));
    }
    const labels = starts.map((ms) => label(ms, granularity));
    const tokenSeries = [...series.entries()].filter(([, s]) => !s.requests);
    const stacked = { x: { stacked: true }, y: { stacked: true, beginAtZero: true } };
    draw("tokens-chart", {
      type: "bar",
      data: { labels, datasets: tokenSeries.map(([name, s]) => ({ label: name, data: s.counts })) },
      options: { scales: stacked, plugins: { title: { display: true, text: "Tokens" } } },
    });
    draw("cost-chart", {
      type: "bar",
      data: { labels, datasets: [...series.entries()].map(([name, s]) => ({ label: name, data: s.costs })) },
      options: {
        scales: { ...stacked, y: { ...stacked.y, ...money } },
        plugins: { title: { display: true, text: `Cost (${usage.currency})` } },
      },
    });

    const body = $("usage-table").tBodies[0];
    body.replaceChildren();
    let tokens = 0;
    let requests = 0;
    let cost = ZERO;
    for (const s of series.values()) {
      body.append(row(
        [s.deployment, s.meter, [s.count, true], [decText(s.quantity), true], s.unit, [`${decText(s.cost)} ${usage.currency}`, true]],
        { deployment: s.deployment, meter: s.meter, count: String(s.count), cost: decText(s.cost) },
      ));
      if (s.requests) requests += s.count;
      else tokens += s.count;
      cost = add(cost, s.cost);
    }
    if (!series.size) body.append(row(["no usage in this range", "", "", "", "", ""]));
    $("usage-total-tokens").textContent = plural(tokens, "token") + (requests ? `, ${plural(requests, "request")}` : "");
    $("usage-total-cost").textContent = `${decText(cost)} ${usage.currency}`;
    const range = granularity === "hour" ? "per hour, last 48 hours" : "per day, last 31 days";
    $("usage-title").textContent = `Usage of ${usage.tenant}, ${range} (UTC)`;
    Object.assign($("usage").dataset, {
      tenant: usage.tenant, granularity, currency: usage.currency,
      totalTokens: String(tokens), totalRequests: String(requests), totalCost: decText(cost),
    });
  }

  // --- budget burn: this month's cost, day by day, against monthly_budget ----------------------------------------
  function renderBudget(summary, month, now) {
    const first = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const days = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
    const perDay = Array.from({ length: days }, () => ZERO);
    let spent = ZERO;
    for (const item of month.items) {
      const day = Math.floor((Date.parse(item.period_start) - first) / DAY);
      if (day >= 0 && day < days) perDay[day] = add(perDay[day], dec(item.cost));
      spent = add(spent, dec(item.cost));
    }
    const today = now.getUTCDate();
    let running = ZERO;
    const cumulative = perDay.map((d, i) => {
      running = add(running, d);
      return i < today ? Number(decText(running)) : null;
    });
    const labels = perDay.map((_, i) => label(first + i * DAY, "day"));
    const datasets = [{ label: `spent (${month.currency})`, data: cumulative, fill: true }];
    const budget = summary.monthly_budget;
    if (budget !== null) datasets.push({ label: "monthly_budget", data: perDay.map(() => Number(budget)), pointRadius: 0 });
    draw("budget-chart", { type: "line", data: { labels, datasets }, options: { scales: { y: { beginAtZero: true, ...money } } } });

    const text = $("budget-text");
    const section = $("budget");
    section.dataset.spent = decText(spent);
    section.dataset.currency = month.currency;
    if (budget === null) {
      text.textContent = `${decText(spent)} ${month.currency} spent this month. ${summary.tenant} has no monthly_budget.`;
      section.dataset.budget = "";
      section.dataset.percent = "";
    } else {
      // A budget of 0 refuses every request: there is no share of it to show.
      const percent = Number(budget) > 0 ? (100 * Number(decText(spent))) / Number(budget) : null;
      const share = percent === null ? "a budget of 0: every request is refused" : `${percent.toFixed(2)} %`;
      text.textContent = `${decText(spent)} of ${budget} ${month.currency} spent this month (${share}), ` +
        `${days - today} days to go.`;
      section.dataset.budget = budget;
      section.dataset.percent = percent === null ? "" : percent.toFixed(4);
    }
  }

  // --- deployments (admin): requests, errors, p50/p95 latency ----------------------------------------------------
  function renderDeployments(view) {
    const section = $("deployments");
    const body = $("deployments-table").tBodies[0];
    body.replaceChildren();
    $("deployments-note").hidden = view !== null;
    $("deployments-chart-box").hidden = view === null;
    $("deployments-table").hidden = view === null;
    if (view === null) {
      if (charts["deployments-chart"]) charts["deployments-chart"].destroy();
      delete charts["deployments-chart"];
      section.dataset.available = "false";
      return;
    }
    const rows = [];
    for (const endpoint of view.endpoints) for (const d of endpoint.deployments) rows.push({ endpoint: endpoint.name, ...d });
    for (const d of view.retired) rows.push({ ...d, name: `${d.name} (retired)` });
    let requests = 0;
    let errors = 0;
    for (const d of rows) {
      const p50 = d.latency_ms.p50 ?? "";
      const p95 = d.latency_ms.p95 ?? "";
      body.append(row(
        [d.endpoint, d.name, [d.requests, true], [d.errors, true], [p50, true], [p95, true], [d.tokens, true], [`${d.cost} ${view.currency}`, true]],
        { deployment: d.name, requests: String(d.requests), errors: String(d.errors), p50: String(p50), p95: String(p95) },
      ));
      requests += d.requests;
      errors += d.errors;
    }
    draw("deployments-chart", {
      type: "bar",
      data: {
        labels: rows.map((d) => d.name),
        datasets: [
          { label: "requests", data: rows.map((d) => d.requests), yAxisID: "y" },
          { label: "errors", data: rows.map((d) => d.errors), yAxisID: "y" },
          { label: "p50 ms", type: "line", showLine: false, pointRadius: 5, data: rows.map((d) => d.latency_ms.p50), yAxisID: "ms" },
          { label: "p95 ms", type: "line", showLine: false, pointRadius: 5, pointStyle: "triangle", data: rows.map((d) => d.latency_ms.p95), yAxisID: "ms" },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "requests" } },
          ms: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "ms" } },
        },
      },
    });
    Object.assign(section.dataset, { available: "true", totalRequests: String(requests), totalErrors: String(errors) });
  }

  // --- recent failed jobs ----------------------------------------------------------------------------------------
  function renderFailed(summary) {
    const body = $("failed-table").tBodies[0];
    body.replaceChildren();
    for (const job of summary.failed_jobs) {
      const when = job.finished_at.replace("T", " ").slice(0, 19);
      const error = `${job.status}: ${job.error.code}${job.error.message ? ` — ${job.error.message}` : ""}`;
      const deployment = job.mirrored ? `${job.deployment} (mirror)` : job.deployment;
      body.append(row([when, job.id, deployment, error], { jobId: job.id, code: job.error.code }));
      body.lastChild.firstChild.className = "when";
    }
    $("failed-none").hidden = summary.failed_jobs.length > 0;
    $("failed-table").hidden = summary.failed_jobs.length === 0;
    $("failed").dataset.count = String(summary.failed_jobs.length);
  }

  function renderWho(summary) {
    $("who").textContent = summary.admin ? `admin key · tenant ${summary.tenant}` : `tenant ${summary.tenant}`;
    const select = $("tenant");
    select.replaceChildren(...summary.tenants.map((name) => new Option(name, name, false, name === summary.tenant)));
    $("tenant-picker").hidden = !summary.admin;
    $("forget").hidden = false;
  }

  // --- loading ---------------------------------------------------------------------------------------------------
  let loads = 0;

  async function load() {
    const mine = ++loads; // a newer load (a picker change) wins over one still under way
    setState("loading");
    $("message").hidden = true;
    $("key-form").hidden = true;
    try {
      const summary = await api("dashboard/summary", { tenant });
      const granularity = $("granularity").value;
      const now = new Date();
      const starts = periods(granularity, now.getTime());
      const [usage, month, deployments] = await Promise.all([
        api("usage", { granularity, from: new Date(starts[0]).toISOString(), tenant: summary.tenant }),
        api("usage", { granularity: "day", tenant: summary.tenant }), // this month so far (the default range)
        summary.admin ? api("deployments") : Promise.resolve(null),
      ]);
      if (mine !== loads) return;
      tenant = summary.tenant;
      renderWho(summary);
      $("content").hidden = false;
      renderUsage(usage, starts, granularity);
      renderBudget(summary, month, now);
      renderDeployments(deployments);
      renderFailed(summary);
      setState("ready");
    } catch (error) {
      if (mine === loads) showError(error);
    }
  }

  function start() {
    const params = fragment();
    if (params.has("key")) {
      sessionStorage.setItem(KEY_STORE, params.get("key"));
      params.delete("key"); // out of the address bar and the history
      keepFragment(params);
    }
    tenant = params.get("tenant");
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORE, $("key").value.trim());
      $("key").value = "";
      tenant = null;
      load();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      $("message").hidden = true;
      setState("needs-key");
      askForKey();
    });
    $("tenant").addEventListener("change", () => {
      tenant = $("tenant").value;
      const rest = fragment();
      rest.set("tenant", tenant);
      keepFragment(rest);
      load();
    });
    $("granularity").addEventListener("change", load);
    if (typeof Chart === "undefined") {
      showError(new Error("the chart library (dashboard/vendor/chart.umd.min.js) did not load."));
    } else if (sessionStorage.getItem(KEY_STORE)) {
      load();
    } else {
      askForKey();
    }
  }

  start();
})();
