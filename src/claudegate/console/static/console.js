// claudegate console: a small dependency-free page over the gateway's admin and chat APIs.
// Every read and change goes to /console/api/admin/… (the admin API) or /console/api/chat… (the chat API);
// changes carry the session's CSRF token. Text from the server is put in the page as text, never as HTML.
"use strict";

const state = { me: null, orgs: [], page: null, timer: null, chatId: null };
const COLORS = ["#c15f3c", "#3b6ea8", "#5a9a57", "#b48a2c", "#7d5ba6", "#4a9ea1", "#a0526e", "#777"];
const KINDS = [
  ["input_tokens", "input"], ["output_tokens", "output"],
  ["cache_creation_input_tokens", "cache write"], ["cache_read_input_tokens", "cache read"],
];

// -- helpers ----------------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// replaceChildren, taking arrays too and leaving out what is absent (null, undefined, false).
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(method, url, body, extraHeaders) {
  const headers = { ...(extraHeaders || {}) };
  if (method !== "GET") headers["x-csrf-token"] = state.me ? state.me.csrf : "";
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(url, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && url !== "/console/api/me") showSignIn();
    throw new ApiError(response.status, (data && data.error && data.error.message) || response.statusText);
  }
  return data;
}

const admin = (method, path, body) => call(method, "/console/api/admin" + path, body);
const enc = encodeURIComponent;
const num = (n) => Number(n || 0).toLocaleString("en-US");
const usd = (s) => "$" + Number(s || 0).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const when = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "").replace("Z", "") + " UTC" : "—");
const isOperator = () => state.me && state.me.role === "operator";

function status(node, error) {
  fill(node, error ? el("span", { class: "error", role: "alert" }, error.message) : "");
}

function numberOrNull(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

function orgPicker(onChange, withAll) {
  if (!isOperator()) return el("span", { class: "hint" }, "Organisation: ", el("b", {}, state.me.org));
  const select = el("select", { id: "org", name: "org" },
    withAll ? el("option", { value: "" }, "all organisations") : null,
    state.orgs.map((o) => el("option", { value: o.name }, o.name)));
  select.addEventListener("change", () => onChange(select.value));
  return el("label", {}, "Organisation", select);
}

function currentOrg() {
  if (!isOperator()) return state.me.org;
  const select = document.getElementById("org");
  return select ? select.value : (state.orgs[0] ? state.orgs[0].name : "");
}

// -- charts: stacked bars as inline SVG ------------------------------------------------------------------

function barChart(periods, series, format) {
  const width = 900, height = 240, left = 70, bottom = 22, top = 8;
  const totals = periods.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const max = Math.max(...totals, 0) || 1;
  const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img" });
  const plotW = width - left - 8, plotH = height - top - bottom;
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    svg.append(el("svg:line", { x1: left, x2: width - 8, y1: y, y2: y, stroke: "#e4e1d8" }));
    svg.append(el("svg:text", { x: left - 6, y: y + 3, "text-anchor": "end" }, format(max * f)));
  }
  const step = plotW / Math.max(periods.length, 1);
  const barW = Math.max(1, step * 0.8);
  periods.forEach((period, i) => {
    let y = top + plotH;
    series.forEach((s, k) => {
      const h = (s.values[i] / max) * plotH;
      if (h <= 0) return;
      y -= h;
      svg.append(el("svg:rect", { x: left + i * step + (step - barW) / 2, y, width: barW, height: h, fill: COLORS[k % COLORS.length] },
        el("svg:title", {}, `${period} · ${s.name}: ${format(s.values[i])}`)));
    });
  });
  const labelEvery = Math.ceil(periods.length / 8);
  periods.forEach((period, i) => {
    if (i % labelEvery) return;
    svg.append(el("svg:text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle" }, period));
  });
  const legend = el("div", { class: "legend" }, series.map((s, k) => {
    const item = el("span", {}, s.name);
    item.style.setProperty("--swatch", COLORS[k % COLORS.length]);
    return item;
  }));
  return el("div", {}, legend, svg);
}

// -- pages ----------------------------------------------------------------------------------------------

const pages = {};

pages.usage = async (view) => {
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 30 * 86400000);
  const form = el("form", { class: "card row", id: "usage-filters" },
    orgPicker(() => {}, true),
    el("label", {}, "User", el("input", { name: "user", placeholder: "any" })),
    el("label", {}, "Key id", el("input", { name: "key", type: "number", min: 1, placeholder: "any" })),
    el("label", {}, "Model", el("select", { name: "model" }, el("option", { value: "" }, "any"),
      state.me.models.map((m) => el("option", { value: m }, m)))),
    el("label", {}, "From", el("input", { name: "since", type: "date", value: monthAgo.toISOString().slice(0, 10) })),
    el("label", {}, "Until (exclusive)", el("input", { name: "until", type: "date" })),
    el("label", {}, "Per", el("select", { name: "bucket" }, ["hour", "day", "month"].map((b) => el("option", { value: b, selected: b === "day" }, b)))),
    el("label", {}, "Split by", el("select", { name: "by" }, ["total", "org", "user", "key", "model"].map((b) => el("option", { value: b, selected: b === "model" }, b)))),
    el("button", { type: "submit" }, "Show"),
  );
  const out = el("div", { id: "usage-report" });
  fill(view, el("h1", {}, "Usage and cost"), form, out);
  const load = async () => {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form).entries()) if (value) params.set(name, value);
    try {
      // A chart shows the 12 costliest groups and the rest as one; the CSV export has every group.
      const report = await admin("GET", "/usage/series?" + params + "&top=12");
      renderUsage(out, report, params);
    } catch (error) { status(out, error); }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  await load();
};

function renderUsage(out, report, params) {
  const totals = report.totals;
  const tiles = el("div", { class: "tiles" },
    [["requests", num(totals.requests)], ["cost_usd", usd(totals.cost_usd)], ["errors", num(totals.errors)],
      ...KINDS.map(([k, name]) => [k, num(totals[k]), name])]
      .map(([key, value, name]) => el("div", { class: "tile" },
        el("div", { class: "name" }, name || key.replace("_usd", " (USD)")),
        el("div", { class: "value", "data-total": key, title: key === "cost_usd" ? totals.cost_usd : null }, value))));
  const periods = [...new Set(report.data.map((r) => r.period))];
  const groups = [...new Map(report.data.map((r) => [r.group, r.label || r.group || "(none)"])).entries()];
  const cost = new Map(groups.map(([g]) => [g, periods.map(() => 0)]));
  const kinds = KINDS.map(() => periods.map(() => 0));
  for (const row of report.data) {
    const i = periods.indexOf(row.period);
    cost.get(row.group)[i] += Number(row.cost_usd);
    KINDS.forEach(([k], j) => { kinds[j][i] += row[k]; });
  }
  const costSeries = groups.map(([g, name]) => ({ name: report.by === "total" ? "cost" : name, values: cost.get(g) }));
  const csv = new URLSearchParams(params); csv.set("format", "csv");
  const table = el("table", { id: "usage-table" },
    el("thead", {}, el("tr", {}, ["period", report.by, "requests", "errors", ...KINDS.map(([, n]) => n), "cost (USD)"]
      .map((h, i) => el("th", { class: i > 1 ? "num" : null }, h)))),
    el("tbody", {}, report.data.map((r) => el("tr", {},
      el("td", {}, r.period), el("td", {}, r.label || r.group || (report.by === "total" ? "all" : "(none)")),
      el("td", { class: "num" }, num(r.requests)), el("td", { class: "num" }, num(r.errors)),
      KINDS.map(([k]) => el("td", { class: "num" }, num(r[k]))),
      el("td", { class: "num", "data-cost": r.cost_usd }, r.cost_usd)))));
  fill(out, 
    tiles,
    el("div", { class: "card" }, el("h2", {}, `Cost per ${report.bucket}` + (report.by === "total" ? "" : ` by ${report.by}`)),
      barChart(periods, costSeries, (v) => usd(v))),
    el("div", { class: "card" }, el("h2", {}, `Tokens per ${report.bucket} by kind`),
      barChart(periods, KINDS.map(([, name], j) => ({ name, values: kinds[j] })), (v) => num(Math.round(v)))),
    el("div", { class: "card" }, el("div", { class: "row" }, el("h2", {}, "The table behind the charts"),
      el("a", { href: "/console/api/admin/usage/series?" + csv, id: "csv", download: "usage.csv" }, "Export CSV")),
    el("div", { class: "scroll" }, table)),
  );
}

pages.live = async (view) => {
  const out = el("div", { id: "live" });
  fill(view, el("h1", {}, "Live"), el("p", { class: "hint" }, "Refreshed every 5 seconds."), out);
  const load = async () => {
    try {
      const live = await admin("GET", "/live");
      fill(out, 
        el("div", { class: "tiles" },
          el("div", { class: "tile" }, el("div", { class: "name" }, "calls in flight"), el("div", { class: "value", "data-live": "in_flight" }, num(live.in_flight))),
          el("div", { class: "tile" }, el("div", { class: "name" }, "refusals, last hour"), el("div", { class: "value" }, num(live.refusals_last_hour)))),
        el("div", { class: "card" }, el("h2", {}, "Upstreams"), el("table", {},
          el("thead", {}, el("tr", {}, ["upstream", "in flight", "queued", "refusals (1 h)", "breaker"].map((h) => el("th", {}, h)))),
          el("tbody", {}, live.upstreams.map((u) => el("tr", {}, el("td", {}, u.name), el("td", { class: "num" }, num(u.in_flight)),
            el("td", { class: "num" }, num(u.waiting)), el("td", { class: "num" }, num(u.refusals_last_hour)),
            el("td", {}, el("span", { class: "badge " + u.breaker }, u.breaker.replace("_", " ")))))))),
        el("div", { class: "card" }, el("h2", {}, "Recent errors (24 h)"), live.recent_errors.length === 0 ? el("p", { class: "hint" }, "None.") :
          el("table", {}, el("thead", {}, el("tr", {}, ["time", "organisation", "model", "upstream", "status", "error", "request id"].map((h) => el("th", {}, h)))),
            el("tbody", {}, live.recent_errors.map((e) => el("tr", {}, el("td", {}, when(e.created_at)), el("td", {}, e.org || "—"),
              el("td", {}, e.model || "—"), el("td", {}, e.upstream || "—"), el("td", {}, e.status), el("td", {}, e.error_type || "—"), el("td", {}, e.request_id)))))),
      );
    } catch (error) { status(out, error); }
  };
  await load();
  state.timer = setInterval(load, 5000);
};

pages.keys = async (view) => {
  const list = el("div", { id: "keys-list" });
  const made = el("div", { id: "key-made" });
  const filter = orgPicker(() => load(), true);
  const create = isOperator() ? el("form", { class: "card", id: "key-create" }, el("h2", {}, "New key"),
    el("div", { class: "row" },
      el("label", {}, "Organisation", el("input", { name: "org", required: true, list: "org-names" })),
      el("datalist", { id: "org-names" }, state.orgs.map((o) => el("option", { value: o.name }))),
      el("label", {}, "User (optional)", el("input", { name: "user" })),
      el("label", {}, "Name", el("input", { name: "name", value: "default" })),
      limitInputs({}),
      el("button", { type: "submit" }, "Create key")), made) : null;
  fill(view, el("h1", {}, "Gateway keys"), create, el("div", { class: "card" }, el("div", { class: "row" }, filter), list));
  async function load() {
    const org = currentOrg();
    try {
      const keys = (await admin("GET", "/keys" + (org ? "?org=" + enc(org) : ""))).data;
      fill(list, keys.length === 0 ? el("p", { class: "hint" }, "No keys.") : el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, ["id", "name", "organisation", "user", "key", "created", "last used", "status", "limits", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, keys.map(keyRow)))));
    } catch (error) { status(list, error); }
  }
  function keyRow(key) {
    const revoked = key.revoked_at !== null;
    const limits = el("form", { class: "row", "data-limits": key.id }, limitInputs(key, revoked || !isOperator()),
      isOperator() && !revoked ? el("button", { type: "submit", class: "plain" }, "Save limits") : null);
    const note = el("span");
    limits.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await admin("PATCH", `/keys/${key.id}`, limitValues(limits));
        fill(note, el("span", { class: "ok" }, "saved"));
      } catch (error) { status(note, error); }
    });
    return el("tr", { "data-key": key.id },
      el("td", {}, key.id), el("td", {}, key.name), el("td", {}, key.org), el("td", {}, key.user || "—"),
      el("td", {}, el("code", {}, key.prefix + "…")), el("td", {}, when(key.created_at)), el("td", {}, when(key.last_used_at)),
      el("td", {}, el("span", { class: "badge " + (revoked ? "revoked" : "active") }, revoked ? "revoked" : "active")),
      el("td", {}, limits, note),
      el("td", {}, isOperator() && !revoked ? el("button", { class: "danger", "data-revoke": key.id, onclick: async () => {
        if (!confirm(`Revoke key ${key.id} (${key.name})? Calls with it fail at once.`)) return;
        try { await admin("POST", `/keys/${key.id}/revoke`); await load(); } catch (error) { status(note, error); }
      } }, "Revoke") : null));
  }
  if (create) create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(create);
    const body = { org: data.get("org"), name: data.get("name") || "default", ...limitValues(create) };
    if (data.get("user")) body.user = data.get("user");
    try {
      const key = await admin("POST", "/keys", body);
      fill(made, el("div", { class: "once" }, el("b", {}, `Key ${key.id} created. `),
        "Copy it now: it is shown once and cannot be shown again.", el("br"), el("code", { id: "new-key" }, key.key)));
      await refreshOrgs();
      await load();
    } catch (error) { status(made, error); }
  });
  await load();
};

const LIMITS = [["requests_per_minute", "rpm"], ["tokens_per_minute", "tpm"], ["max_concurrency", "concurrency"],
  ["deadline_ms", "deadline ms"], ["priority", "priority"]];

function limitInputs(key, disabled) {
  const source = key.limits || key;
  return LIMITS.map(([name, label]) => el("label", {}, label, el("input", {
    name, type: "number", min: name === "priority" ? null : 1, disabled: !!disabled, placeholder: "none",
    value: (name in source ? source[name] : key[name]) ?? "" })));
}

function limitValues(form) {
  const values = {};
  for (const [name] of LIMITS) values[name] = numberOrNull(form.elements[name]);
  return values;
}

pages.budgets = async (view) => {
  const out = el("div", { id: "budgets" });
  fill(view, el("h1", {}, "Budgets"), el("div", { class: "card row" }, orgPicker(() => load(), false)), out);
  async function load() {
    const org = currentOrg();
    if (!org) { fill(out, el("p", { class: "hint" }, "No organisations yet.")); return; }
    try {
      const budget = await admin("GET", `/organizations/${enc(org)}/budget`);
      const users = (await admin("GET", `/organizations/${enc(org)}/users`)).data;
      const userBudgets = await Promise.all(users.map((u) => admin("GET", `/organizations/${enc(org)}/users/${enc(u.name)}/budget`)));
      fill(out, budgetCard(`Organisation ${org}`, `/organizations/${enc(org)}/budget`, budget, "org"),
        userBudgets.map((b) => budgetCard(`User ${b.user}`, `/organizations/${enc(org)}/users/${enc(b.user)}/budget`, b, "user-" + b.user)));
    } catch (error) { status(out, error); }
  }
  await load();
};

const CAPS = [["daily_tokens", "tokens a day"], ["monthly_tokens", "tokens a month"], ["daily_usd", "USD a day"], ["monthly_usd", "USD a month"]];

function budgetCard(title, path, budget, id) {
  const note = el("span");
  const form = el("form", { class: "row", "data-budget": id },
    CAPS.map(([name, label]) => el("label", {}, label, el("input", { name, type: "number", min: 0, step: name.endsWith("usd") ? "0.01" : "1",
      placeholder: "no cap", value: budget[name] ?? "", disabled: !isOperator() }))),
    isOperator() ? el("button", { type: "submit" }, "Save caps") : null, note);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const [name] of CAPS) body[name] = numberOrNull(form.elements[name]);
    try { const saved = await admin("PATCH", path, body); form.closest(".card").replaceWith(budgetCard(title, path, saved, id)); }
    catch (error) { status(note, error); }
  });
  const spent = budget.spent;
  return el("div", { class: "card" }, el("h2", {}, title),
    el("table", {}, el("thead", {}, el("tr", {}, ["", "tokens", "cap", "USD", "cap", "resets"].map((h) => el("th", {}, h)))),
      el("tbody", {},
        el("tr", { "data-spent": id + "-today" }, el("td", {}, "today"), el("td", { class: "num" }, num(spent.today.tokens)), el("td", { class: "num" }, budget.daily_tokens === null ? "—" : num(budget.daily_tokens)),
          el("td", { class: "num" }, usd(spent.today.usd)), el("td", { class: "num" }, budget.daily_usd === null ? "—" : usd(budget.daily_usd)), el("td", {}, when(spent.today.resets_at))),
        el("tr", { "data-spent": id + "-month" }, el("td", {}, "this month"), el("td", { class: "num" }, num(spent.this_month.tokens)), el("td", { class: "num" }, budget.monthly_tokens === null ? "—" : num(budget.monthly_tokens)),
          el("td", { class: "num" }, usd(spent.this_month.usd)), el("td", { class: "num" }, budget.monthly_usd === null ? "—" : usd(budget.monthly_usd)), el("td", {}, when(spent.this_month.resets_at))))),
    form);
}

pages.prompts = async (view) => {
  const out = el("div", { id: "prompts" });
  const create = isOperator() ? el("form", { class: "card", id: "prompt-create" }, el("h2", {}, "New prompt or version"),
    el("div", { class: "row" }, el("label", {}, "Name", el("input", { name: "name", required: true })),
      el("label", {}, "Model (optional)", el("input", { name: "model" })), el("label", {}, "Note", el("input", { name: "note" })),
      el("label", {}, "Activate", el("input", { name: "activate", type: "checkbox" }))),
    el("label", { class: "wide" }, "System prompt", el("textarea", { name: "system", required: true, cols: 90 })),
    el("div", {}, el("button", { type: "submit" }, "Save version")), el("span", { id: "prompt-note" })) : null;
  fill(view, el("h1", {}, "Prompts"), el("div", { class: "card row" }, orgPicker(() => load(), false)), create, out);
  async function load() {
    const org = currentOrg();
    if (!org) return;
    try {
      const prompts = (await admin("GET", `/organizations/${enc(org)}/prompts`)).data;
      const full = await Promise.all(prompts.map((p) => admin("GET", `/organizations/${enc(org)}/prompts/${enc(p.name)}`)));
      fill(out, full.length === 0 ? el("p", { class: "hint" }, "No prompts.") : full.map((p) => promptCard(org, p, load)));
    } catch (error) { status(out, error); }
  }
  if (create) create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(create);
    const body = { name: data.get("name"), system: data.get("system"), model: data.get("model") || null,
      note: data.get("note") || null, activate: data.get("activate") === "on" };
    try { await admin("POST", `/organizations/${enc(currentOrg())}/prompts`, body); create.reset(); await load(); }
    catch (error) { status(document.getElementById("prompt-note"), error); }
  });
  await load();
};

function promptCard(org, prompt, reload) {
  const base = `/organizations/${enc(org)}/prompts/${enc(prompt.name)}`;
  const note = el("span");
  const act = (method, path, body) => async () => {
    try { await admin(method, base + path, body); await reload(); } catch (error) { status(note, error); }
  };
  const split = prompt.split || {};
  const weights = el("form", { class: "row" }, prompt.versions.map((v) => el("label", {}, `v${v.version} weight`,
    el("input", { type: "number", min: 0, name: "v" + v.version, value: split[v.version] ?? "", placeholder: "0", disabled: !isOperator() }))),
    isOperator() ? el("button", { type: "submit", class: "plain" }, "Set A/B split") : null,
    isOperator() && prompt.split ? el("button", { type: "button", class: "plain", onclick: act("PUT", "/split", { weights: null }) }, "End split") : null);
  weights.addEventListener("submit", (event) => {
    event.preventDefault();
    const w = {};
    for (const v of prompt.versions) { const n = numberOrNull(weights.elements.namedItem("v" + v.version)); if (n) w[v.version] = n; }
    act("PUT", "/split", { weights: w })();
  });
  return el("div", { class: "card", "data-prompt": prompt.name },
    el("h2", {}, prompt.name, " ", el("span", { class: "hint" }, `active: v${prompt.active_version ?? "—"}` + (prompt.previous_version ? ` · previous: v${prompt.previous_version}` : ""))),
    el("table", {}, el("thead", {}, el("tr", {}, ["version", "model", "note", "system prompt", "created", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, prompt.versions.map((v) => el("tr", {}, el("td", {}, "v" + v.version, v.version === prompt.active_version ? el("span", { class: "badge active" }, " active") : ""),
        el("td", {}, v.model || "default"), el("td", {}, v.note || ""), el("td", {}, el("pre", { class: "system" }, v.system)), el("td", {}, when(v.created_at)),
        el("td", {}, isOperator() && v.version !== prompt.active_version ? el("button", { class: "plain", onclick: act("POST", "/activate", { version: v.version }) }, "Activate") : null))))),
    weights,
    isOperator() && prompt.previous_version ? el("button", { class: "plain", onclick: act("POST", "/rollback") }, `Roll back to v${prompt.previous_version}`) : null,
    note);
}

pages.playground = async (view) => {
  const keySelect = el("select", { id: "chat-key" });
  const model = el("select", { id: "chat-model" }, state.me.models.map((m) => el("option", { value: m, selected: m === state.me.chat_model }, m)));
  const prompt = el("select", { id: "chat-prompt" }, el("option", { value: "" }, "no prompt"));
  const version = el("select", { id: "chat-version" }, el("option", { value: "" }, "as configured"));
  const chats = el("div", { class: "chats", id: "chats" });
  const messages = el("div", { class: "messages", id: "messages" });
  const input = el("textarea", { id: "chat-input", placeholder: "Message…" });
  const note = el("div");
  const promptData = new Map();
  const orgPick = orgPicker(async () => { await loadKeys(); }, false);
  fill(view, el("h1", {}, "Playground"),
    el("div", { class: "card row" }, orgPick, isOperator() ? el("label", {}, "Chat as key", keySelect) : null,
      el("label", {}, "Model", model), el("label", {}, "Prompt", prompt), el("label", {}, "Prompt version", version),
      el("button", { type: "button", class: "plain", onclick: () => { state.chatId = null; fill(messages); markChat(); } }, "New chat")),
    el("div", { class: "play" }, el("div", { class: "card" }, el("h3", {}, "Conversations"), chats),
      el("div", { class: "card" }, messages, el("form", { id: "chat-form" }, input, el("button", { type: "submit" }, "Send")), note)));
  const chatHeaders = () => (isOperator() ? { "x-console-key-id": keySelect.value } : {});
  const chatApi = (method, path, body) => call(method, "/console/api" + path, body, chatHeaders());

  async function loadKeys() {
    const org = currentOrg();
    if (isOperator()) {
      const keys = org ? (await admin("GET", "/keys?org=" + enc(org))).data.filter((k) => !k.revoked_at) : [];
      fill(keySelect, ...keys.map((k) => el("option", { value: k.id }, `${k.id}: ${k.name}${k.user ? " (" + k.user + ")" : ""}`)));
    }
    const prompts = org ? (await admin("GET", `/organizations/${enc(org)}/prompts`)).data : [];
    fill(prompt, el("option", { value: "" }, "no prompt"), ...prompts.map((p) => el("option", { value: p.name }, p.name)));
    promptData.clear();
    state.chatId = null;
    fill(messages);
    await loadChats();
  }
  prompt.addEventListener("change", async () => {
    fill(version, el("option", { value: "" }, "as configured"));
    if (!prompt.value) return;
    const full = await admin("GET", `/organizations/${enc(currentOrg())}/prompts/${enc(prompt.value)}`);
    version.append(...full.versions.map((v) => el("option", { value: v.version }, "v" + v.version + (v.version === full.active_version ? " (active)" : ""))));
  });
  keySelect.addEventListener("change", () => { state.chatId = null; fill(messages); loadChats(); });

  async function loadChats() {
    if (isOperator() && !keySelect.value) { fill(chats, el("p", { class: "hint" }, "This organisation has no active key to chat as.")); return; }
    try {
      const list = (await chatApi("GET", "/chats?limit=50")).data;
      fill(chats, ...list.map((c) => el("a", { href: "#playground", "data-chat": c.id, onclick: (e) => { e.preventDefault(); openChat(c.id); } }, c.title || c.id)));
      markChat();
    } catch (error) { status(chats, error); }
  }
  function markChat() {
    for (const a of chats.querySelectorAll("a")) a.classList.toggle("active", a.dataset.chat === state.chatId);
  }
  async function openChat(id) {
    state.chatId = id;
    markChat();
    const chat = await chatApi("GET", `/chats/${enc(id)}`);
    fill(messages, ...chat.messages.filter((m) => m.role === "user" || m.role === "assistant").map((m) => bubble(m.role,
      (m.content || []).filter((b) => b.type === "text").map((b) => b.text).join(""), m.role === "assistant" ? meta(m) : null)));
  }
  function meta(m) {
    const u = m.usage || m;
    return `${num(u.input_tokens)} in · ${num(u.output_tokens)} out` +
      (u.cache_read_input_tokens ? ` · ${num(u.cache_read_input_tokens)} cache read` : "") +
      (u.cache_creation_input_tokens ? ` · ${num(u.cache_creation_input_tokens)} cache write` : "") +
      (m.cost_usd != null ? ` · $${m.cost_usd}` : "") + (m.model ? ` · ${m.model}` : "");
  }
  function bubble(role, text, info) {
    const node = el("div", { class: "msg " + role }, el("span", { class: "text" }, text), info ? el("div", { class: "meta" }, info) : null);
    messages.append(node);
    messages.scrollTop = messages.scrollHeight;
    return node;
  }
  document.getElementById("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    fill(note);
    bubble("user", text);
    const reply = bubble("assistant", "");
    reply.classList.add("streaming");
    const body = { message: text, model: model.value };
    if (state.chatId) body.chat_id = state.chatId;
    else if (prompt.value) { body.prompt = prompt.value; if (version.value) body.prompt_version = Number(version.value); }
    try {
      const response = await fetch("/console/api/chat/stream", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": state.me.csrf, ...chatHeaders() },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const data = await response.json().catch(() => null);
        throw new Error((data && data.error && data.error.message) || response.statusText);
      }
      const done = await readStream(response, (token) => { reply.querySelector(".text").textContent += token; messages.scrollTop = messages.scrollHeight; });
      if (done.error) throw new Error(done.error.message);
      state.chatId = done.chat_id;
      // The cost is on the stored reply: read it back through the chat API.
      const chat = await chatApi("GET", `/chats/${enc(done.chat_id)}?limit=1000`);
      const stored = chat.messages.find((m) => m.id === done.message_id) || { usage: done.usage, model: done.model };
      reply.append(el("div", { class: "meta", "data-reply-meta": done.message_id }, meta(stored)));
      await loadChats();
    } catch (error) {
      reply.append(el("div", { class: "meta error" }, error.message));
    } finally { reply.classList.remove("streaming"); reply.classList.add("done"); }
  });
  await loadKeys();
};

// Server-sent events of the chat API: one JSON "data:" line per event; comments keep the line open.
async function readStream(response, onToken) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const event = JSON.parse(line.slice(6));
        if (event.done) return event;
        onToken(event.token);
      }
    }
  }
  throw new Error("the reply's stream ended early");
}

// -- shell ----------------------------------------------------------------------------------------------

async function refreshOrgs() {
  if (isOperator()) state.orgs = (await admin("GET", "/organizations")).data;
}

function showSignIn() {
  document.getElementById("bar").hidden = true;
  fill(document.getElementById("view"));
  document.getElementById("sign-in").hidden = false;
  state.me = null;
}

async function route() {
  if (!state.me) return;
  if (state.timer) { clearInterval(state.timer); state.timer = null; }
  let page = location.hash.slice(1) || "usage";
  if (!pages[page] || (page === "live" && !isOperator())) page = "usage";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  const view = document.getElementById("view");
  fill(view, el("p", { class: "hint" }, "Loading…"));
  view.dataset.page = page;
  try { await pages[page](view); } catch (error) { status(view, error); }
  view.dataset.ready = page;
}

async function start() {
  try { state.me = await call("GET", "/console/api/me"); } catch { showSignIn(); return; }
  document.getElementById("sign-in").hidden = true;
  document.getElementById("bar").hidden = false;
  for (const a of document.querySelectorAll("#nav a[data-operator]")) a.hidden = !isOperator();
  document.getElementById("who").textContent = isOperator() ? "operator" : `${state.me.org} · key ${state.me.key}` + (state.me.user ? ` · ${state.me.user}` : "");
  await refreshOrgs();
  await route();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("sign-in-error");
    try {
      await call("POST", "/console/sign-in", { token: document.getElementById("token").value });
      document.getElementById("token").value = "";
      error.textContent = "";
      await start();
    } catch (e) { error.textContent = e.message; }
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    await call("POST", "/console/sign-out").catch(() => null);
    showSignIn();
  });
  window.addEventListener("hashchange", route);
  start();
});
