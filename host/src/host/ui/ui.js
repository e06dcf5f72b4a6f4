// The object browser of dohost (/_dohost/ui): plain JavaScript over the
// admin HTTP API. The admin token lives in this tab's sessionStorage and
// goes out only as an Authorization header; nothing is put in a URL.
// Everything the API returns is written as text (textContent), never as
// HTML.

const TOKEN_KEY = "dohost-admin-token";
const PAGE = 50;
const STATS_EVERY_MS = 2000;

const $ = (id) => document.getElementById(id);

/** An element with `text`, and the class `cls` if given. */
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

/** A failure the API answered with `{"error": ".."}`. */
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

/** Calls the admin API at /_dohost/PATH with the token; the JSON answer. */
async function api(method, path, body, given = token()) {
  const headers = { authorization: `Bearer ${given}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`/_dohost/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const message = (data && data.error) || `HTTP ${res.status}`;
    if (res.status === 401 && given === token()) logout(`Logged out: ${message}`);
    throw new ApiError(message, res.status);
  }
  return data;
}

const enc = encodeURIComponent;
const objectPath = (binding, ref) => `objects/${enc(binding)}/${enc(ref)}`;

// ---- logging in and out -------------------------------------------------

function showLogin(message = "") {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

function logout(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  stopStats();
  showLogin(message);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const given = $("token").value.trim();
  try {
    await api("GET", "bindings", undefined, given);
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong token." : e.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, given);
  $("token").value = "";
  start();
});

$("logout").addEventListener("click", () => logout());

async function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  startStats();
  try {
    await loadBindings();
  } catch (e) {
    return showError(e);
  }
  route();
}

function showError(e) {
  $("error").textContent = e ? e.message || String(e) : "";
}

// ---- the host's numbers --------------------------------------------------

let statsTimer = null;

const STATS = [
  ["objects_in_memory", "Objects in memory"],
  ["activations", "Activations"],
  ["activation_time_us", "Activation time", (us) => `${(us / 1000).toFixed(1)} ms`],
  ["worker_instances", "Worker instances"],
  ["websockets", "WebSockets"],
  ["cache_bytes", "Cache", bytes],
  ["disk_reads", "Disk reads"],
  ["alarms_in_memory", "Alarms scheduled"],
  ["alarms_run", "Alarms run"],
];

async function refreshStats() {
  try {
    const stats = await api("GET", "stats");
    const list = $("stats");
    list.replaceChildren();
    for (const [key, label, show] of STATS) {
      if (!(key in stats)) continue;
      list.append(el("dt", label), el("dd", show ? show(stats[key]) : stats[key], "num"));
    }
    $("stats-state").textContent = `live, ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("stats-state").textContent = `stale: ${e.message}`;
  }
}

function startStats() {
  stopStats();
  refreshStats();
  statsTimer = setInterval(refreshStats, STATS_EVERY_MS);
}

function stopStats() {
  if (statsTimer !== null) clearInterval(statsTimer);
  statsTimer = null;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do {
    n /= 1024;
    i += 1;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(1)} ${units[i]}`;
}

// ---- navigation: #/BINDING and #/BINDING/id:ID ---------------------------

let bindings = [];

async function loadBindings() {
  bindings = await api("GET", "bindings");
  const list = $("bindings");
  list.replaceChildren();
  for (const b of bindings) {
    const a = el("a", b.binding);
    a.href = `#/${enc(b.binding)}`;
    const li = el("li");
    li.append(a, " ", el("span", b.class, "muted"));
    list.append(li);
  }
}

function route() {
  showError(null);
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  for (const view of ["home-view", "objects-view", "object-view"]) $(view).hidden = true;
  for (const a of $("bindings").querySelectorAll("a")) {
    a.classList.toggle("current", a.textContent === parts[0]);
  }
  if (parts.length === 0) {
    $("home-view").hidden = false;
  } else if (parts.length === 1) {
    openBinding(parts[0]).catch(showError);
  } else {
    openObject(parts[0], parts.slice(1).join("/")).catch(showError);
  }
}

window.addEventListener("hashchange", () => {
  if (token()) route();
});

// ---- a binding's objects -------------------------------------------------

let objects = { binding: null, q: "", next: null };

async function openBinding(binding) {
  $("objects-view").hidden = false;
  const found = bindings.find((b) => b.binding === binding);
  $("objects-title").textContent = found ? `${binding} (${found.class})` : binding;
  if (objects.binding !== binding) {
    objects = { binding, q: "", next: null };
    $("q").value = "";
  }
  $("objects").tBodies[0].replaceChildren();
  await loadObjects(null);
}

async function loadObjects(after) {
  const params = new URLSearchParams({ binding: objects.binding, limit: String(PAGE) });
  if (objects.q) params.set("q", objects.q);
  if (after) params.set("after", after);
  const page = await api("GET", `objects?${params}`);
  const body = $("objects").tBodies[0];
  for (const o of page.objects) {
    const tr = el("tr");
    const name = el("td");
    const a = el("a", o.name === null ? "(no name)" : o.name);
    a.href = `#/${enc(o.binding)}/${enc(`id:${o.id}`)}`;
    name.append(a);
    tr.append(name, el("td", o.id, "mono"));
    body.append(tr);
  }
  objects.next = page.next;
  $("objects-more").hidden = !page.next;
  $("objects-empty").hidden = body.rows.length > 0;
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  objects.q = $("q").value.trim();
  $("objects").tBodies[0].replaceChildren();
  loadObjects(null).catch(showError);
});

$("objects-more").addEventListener("click", () => loadObjects(objects.next).catch(showError));

// ---- one object ----------------------------------------------------------

let current = null;

async function openObject(binding, ref) {
  current = { binding, ref, path: objectPath(binding, ref), kvNext: null, table: null, offset: 0 };
  $("object-view").hidden = false;
  for (const id of ["alarm-result", "query-error", "delete-result"]) $(id).textContent = "";
  $("query-result").replaceChildren();
  $("kv").tBodies[0].replaceChildren();
  $("rows-view").hidden = true;
  $("delete-confirm").hidden = true;
  $("delete").hidden = false;
  await showDetails();
  await loadKeys(null);
}

async function showDetails() {
  const d = await api("GET", current.path);
  $("object-title").textContent = `${d.binding} · ${d.name === null ? "(no name)" : d.name}`;
  $("object-id").textContent = `${d.class} · id ${d.id}`;
  $("kv-count").textContent = `(${d.keys_total})`;
  $("sql-size").textContent = d.sql_bytes ? `(${bytes(d.sql_bytes)})` : "(none)";
  $("alarm-text").textContent = d.alarm === null ? "No alarm set." : `Due ${when(d.alarm)}.`;
  $("alarm-run").hidden = d.alarm === null;
  const tables = $("tables");
  tables.replaceChildren();
  for (const t of d.sql_tables) {
    const b = el("button", `${t.name} (${t.rows})`);
    b.type = "button";
    b.dataset.table = t.name;
    b.addEventListener("click", () => openTable(t.name).catch(showError));
    const li = el("li");
    li.append(b);
    tables.append(li);
  }
}

function when(ms) {
  const at = new Date(ms);
  const seconds = Math.round((ms - Date.now()) / 1000);
  const rel = seconds >= 0 ? `in ${seconds} s` : `${-seconds} s ago`;
  return `${at.toISOString()} (${rel})`;
}

async function loadKeys(after) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (after) params.set("after", after);
  const page = await api("GET", `${current.path}/kv?${params}`);
  const body = $("kv").tBodies[0];
  for (const item of page.keys) {
    const value = el("td");
    if ("json" in item) {
      value.append(el("pre", JSON.stringify(item.json, null, 2), "json"));
    } else {
      const shown = item.hex.replace(/(..)/g, "$1 ").trim();
      const more = item.hex.length / 2 < item.bytes ? ` … (${item.bytes} bytes)` : "";
      value.append(el("code", shown + more, "hex"));
    }
    const tr = el("tr");
    tr.append(el("td", item.key, "mono key"), value);
    body.append(tr);
  }
  current.kvNext = page.next;
  $("kv-more").hidden = !page.next;
}

$("kv-more").addEventListener("click", () => loadKeys(current.kvNext).catch(showError));

async function openTable(table) {
  current.table = table;
  current.offset = 0;
  $("rows-view").hidden = false;
  $("rows-title").textContent = table;
  $("rows").replaceChildren();
  await loadRows();
}

async function loadRows() {
  const params = new URLSearchParams({ offset: String(current.offset), limit: String(PAGE) });
  const page = await api("GET", `${current.path}/sql/${enc(current.table)}?${params}`);
  renderRows($("rows"), page, current.offset > 0);
  current.offset += page.rows.length;
  $("rows-more").hidden = page.rows.length < PAGE;
}

$("rows-more").addEventListener("click", () => loadRows().catch(showError));

/** Writes `result` ({columns, rows, truncated}) into `table`. */
function renderRows(table, result, append) {
  if (!append) {
    table.replaceChildren();
    const head = el("tr");
    for (const c of result.columns) head.append(el("th", c));
    table.createTHead().append(head);
    table.createTBody();
  }
  const body = table.tBodies[0];
  for (const row of result.rows) {
    const tr = el("tr");
    for (const cell of row) tr.append(cellOf(cell));
    body.append(tr);
  }
  if (result.truncated) {
    const tr = el("tr");
    const td = el("td", "… more rows were left out", "muted");
    td.colSpan = Math.max(1, result.columns.length);
    tr.append(td);
    body.append(tr);
  }
}

function cellOf(value) {
  if (value === null) return el("td", "NULL", "muted");
  if (typeof value === "object") return el("td", `x'${value.hex}'`, "mono");
  return el("td", value, typeof value === "number" ? "num" : undefined);
}

$("query").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("query-error").textContent = "";
  $("query-result").replaceChildren();
  try {
    const result = await api("POST", `${current.path}/sql`, { query: $("query-text").value });
    renderRows($("query-result"), result, false);
    if (result.rows.length === 0) $("query-error").textContent = "No rows.";
  } catch (e) {
    $("query-error").textContent = e.message;
  }
});

$("alarm-run").addEventListener("click", async () => {
  $("alarm-result").textContent = "Running…";
  try {
    const run = await api("POST", `${current.path}/alarm/run`);
    const next = run.alarm === null ? "the alarm is cleared" : `next due ${when(run.alarm)}`;
    $("alarm-result").textContent =
      run.error === null ? `Ran; ${next}.` : `The handler failed: ${run.error}; ${next}.`;
    await showDetails();
    $("kv").tBodies[0].replaceChildren();
    await loadKeys(null);
  } catch (e) {
    $("alarm-result").textContent = e.message;
  }
});

$("delete").addEventListener("click", () => {
  $("delete").hidden = true;
  $("delete-confirm").hidden = false;
});

$("delete-no").addEventListener("click", () => {
  $("delete-confirm").hidden = true;
  $("delete").hidden = false;
});

$("delete-yes").addEventListener("click", async () => {
  $("delete-confirm").hidden = true;
  try {
    await api("DELETE", current.path);
    $("delete-result").textContent = "Deleted.";
    objects.binding = null;
    setTimeout(() => {
      location.hash = `#/${enc(current.binding)}`;
    }, 800);
  } catch (e) {
    $("delete-result").textContent = e.message;
    $("delete").hidden = false;
  }
});

// ---- start ---------------------------------------------------------------

if (token()) {
  start();
} else {
  showLogin();
}
