// The clusters page: lists the clusters the viewer may see and stops/scales them through
// the service's JSON API (api/hubgate/...), with the browser's cookie. Every value from
// the API goes into the page with textContent, never as HTML.
(() => {
  "use strict";

  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const BASE = meta("hubgate-base-url");
  const XSRF = meta("hubgate-xsrf");
  const POLL_MS = 2000;
  const MAX_POLL_MS = 30000;
  const CONFIRM_MS = 5000;
  const RECENT_MS = 10 * 60 * 1000; // stopped clusters stay listed this long
  const MESSAGE_MS = 8000; // a row that vanished keeps its error message this long
  const ACTIVE = new Set(["PENDING", "RUNNING"]);
  const LIVE = new Set(["PENDING", "RUNNING", "STOPPING"]);

  const tbody = document.querySelector("#clusters tbody");
  const banner = document.getElementById("banner");
  const empty = document.getElementById("empty");
  const showStopped = document.getElementById("show-stopped");

  const rows = new Map(); // name -> {tr, cells}
  const latest = new Map(); // name -> last Cluster seen
  const rowState = new Map(); // name -> {confirmUntil, busy, message}
  let viewer = null;
  let delay = POLL_MS;
  let timer = null;
  let polling = false;
  let pollAgain = false;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    // JupyterHub's cookie login wants the XSRF header on every script request, GET too.
    const headers = { Accept: "application/json", "X-XSRFToken": XSRF };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(BASE + path, {
      method,
      headers,
      credentials: "same-origin",
      redirect: "manual", // a redirect here means "log in again", not data
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.type === "opaqueredirect") {
      throw new ApiError(401, "Your hub session has ended. Reload the page to log in again.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : null;
      throw new ApiError(response.status, message || `The service answered ${response.status} ${response.statusText}.`);
    }
    return data;
  }

  function describe(error) {
    if (error instanceof ApiError) return error.message;
    return `Cannot reach the service (${error.message}).`;
  }

  function showBanner(text) {
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  // ---- formatting -------------------------------------------------------------------

  function toMillis(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "number") return value * 1000; // epoch seconds
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed;
  }

  function duration(ms) {
    if (ms === null || ms < 0) return "—";
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h}h ${m % 60}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  function bytes(n) {
    if (typeof n !== "number" || n <= 0) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function safeLink(url) {
    if (typeof url !== "string" || !url) return null;
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function isListed(cluster, now) {
    if (showStopped.checked || LIVE.has(cluster.status)) return true;
    const stopped = toMillis(cluster.stopped);
    return stopped !== null && now - stopped < RECENT_MS;
  }

  // ---- rows ---------------------------------------------------------------------------

  function stateOf(name) {
    if (!rowState.has(name)) {
      rowState.set(name, { confirmUntil: 0, busy: false, message: "", messageAt: 0 });
    }
    return rowState.get(name);
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function createRow(name) {
    const tr = element("tr");
    tr.dataset.name = name;
    const cells = {};
    const columns = ["display-name", "name", "owner", "status", "workers", "cores", "memory", "age", "idle", "dashboard", "actions"];
    for (const key of columns) {
      cells[key] = element("td", key);
      tr.appendChild(cells[key]);
    }
    cells.owner.classList.add("owner-col");
    for (const key of ["workers", "cores", "memory", "age", "idle"]) cells[key].classList.add("num");
    cells.name.textContent = name;

    cells.statusBadge = element("span", "badge");
    cells.reason = element("span", "reason");
    cells.status.append(cells.statusBadge, cells.reason);

    cells.link = element("a", "", "Open");
    cells.link.target = "_blank";
    cells.link.rel = "noopener";
    cells.noLink = element("span", "", "—");
    cells.dashboard.append(cells.link, cells.noLink);

    // The buttons' flex box sits inside the cell: a flex <td> is no table cell, and
    // would not line up with its column and row.
    const box = element("div", "action-buttons");
    cells.stop = element("button", "stop", "Stop");
    cells.stop.type = "button";
    cells.stop.addEventListener("click", () => onStop(name));
    box.appendChild(cells.stop);
    if (viewer && viewer.admin) {
      cells.count = element("input");
      cells.count.type = "number";
      cells.count.min = "0";
      cells.scale = element("button", "scale", "Scale");
      cells.scale.type = "button";
      cells.scale.addEventListener("click", () => onScale(name));
      box.append(cells.count, cells.scale);
    }
    cells.message = element("span", "row-msg");
    cells.actions.append(box, cells.message);
    return { tr, cells };
  }

  function updateRow(name, now) {
    const row = rows.get(name);
    const cluster = latest.get(name);
    if (!row || !cluster) return;
    const { cells } = row;
    const state = stateOf(name);
    const workers = cluster.workers || {};
    cells["display-name"].textContent = cluster.display_name || "—";
    cells.owner.textContent = cluster.owner ?? "";
    cells.statusBadge.textContent = cluster.status;
    cells.statusBadge.className = `badge badge-${cluster.status}`;
    cells.reason.textContent = cluster.reason || "";
    let workerText = `${workers.running ?? 0}/${workers.requested ?? 0}`;
    if (workers.pending) workerText += ` (+${workers.pending} starting)`;
    cells.workers.textContent = workerText;
    cells.cores.textContent = cluster.cores ?? "—";
    cells.memory.textContent = bytes(cluster.memory);
    const created = toMillis(cluster.created);
    const end = LIVE.has(cluster.status) ? now : toMillis(cluster.stopped) ?? now;
    cells.age.textContent = created === null ? "—" : duration(end - created);
    const idleSince = toMillis(cluster.idle_since);
    cells.idle.textContent =
      cluster.status !== "RUNNING" ? "—" : idleSince === null ? "busy" : duration(now - idleSince);

    const href = cluster.status === "RUNNING" ? safeLink(cluster.dashboard_url) : null;
    cells.link.hidden = !href;
    cells.noLink.hidden = Boolean(href);
    if (href) cells.link.href = href;
    else cells.link.removeAttribute("href");

    const confirming = state.confirmUntil > now;
    cells.stop.disabled = state.busy || !ACTIVE.has(cluster.status);
    cells.stop.textContent = confirming ? "Confirm stop" : "Stop";
    cells.stop.classList.toggle("confirm", confirming);
    if (cells.scale) {
      cells.scale.disabled = state.busy || !ACTIVE.has(cluster.status);
      cells.count.disabled = cells.scale.disabled;
      cells.count.setAttribute("aria-label", `workers for ${cluster.display_name || name}`);
      if (!cells.count.value && document.activeElement !== cells.count) {
        cells.count.placeholder = String(workers.requested ?? 0);
      }
    }
    cells.message.textContent = state.message;
  }

  function render(clusters) {
    const now = Date.now();
    const listed = clusters
      .filter((c) => isListed(c, now))
      .sort((a, b) => (toMillis(b.created) ?? 0) - (toMillis(a.created) ?? 0));
    const names = new Set(listed.map((c) => c.name));
    for (const [name, row] of rows) {
      const state = stateOf(name);
      const showingMessage = state.message && now - state.messageAt < MESSAGE_MS;
      row.tr.classList.toggle("gone", !names.has(name));
      if (!names.has(name) && !showingMessage) {
        row.tr.remove();
        rows.delete(name);
        latest.delete(name);
        rowState.delete(name);
      }
    }
    listed.forEach((cluster, index) => {
      latest.set(cluster.name, cluster);
      if (!rows.has(cluster.name)) rows.set(cluster.name, createRow(cluster.name));
      const { tr } = rows.get(cluster.name);
      // Move only when out of place, so a focused scale input keeps its focus.
      if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] || null);
      updateRow(cluster.name, now);
    });
    empty.hidden = listed.length > 0;
  }

  // ---- actions --------------------------------------------------------------------------

  function applyCluster(cluster) {
    if (cluster && typeof cluster.name === "string" && rows.has(cluster.name)) {
      latest.set(cluster.name, cluster);
    }
  }

  async function onStop(name) {
    const state = stateOf(name);
    if (!(state.confirmUntil > Date.now())) {
      // First click arms the button; a second one within CONFIRM_MS stops the cluster.
      state.confirmUntil = Date.now() + CONFIRM_MS;
      state.message = "";
      updateRow(name, Date.now());
      setTimeout(() => updateRow(name, Date.now()), CONFIRM_MS + 50);
      return;
    }
    state.confirmUntil = 0;
    await act(name, () => api("DELETE", `api/hubgate/clusters/${encodeURIComponent(name)}`));
  }

  async function onScale(name) {
    const input = rows.get(name).cells.count;
    const count = Number(input.value);
    if (input.value === "" || !Number.isInteger(count) || count < 0) {
      stateOf(name).message = "Enter a whole number of workers (0 or more).";
      updateRow(name, Date.now());
      return;
    }
    await act(name, async () => {
      const reply = await api("POST", `api/hubgate/clusters/${encodeURIComponent(name)}/scale`, { count });
      if (reply && reply.ok === false) throw new ApiError(409, reply.msg || "The cluster could not be scaled.");
      input.value = "";
      return reply && reply.cluster;
    });
  }

  async function act(name, request) {
    const state = stateOf(name);
    state.busy = true;
    state.message = "";
    updateRow(name, Date.now());
    try {
      applyCluster(await request());
    } catch (error) {
      console.error(`hubgate: action on ${name} failed`, error);
      state.message = describe(error);
      state.messageAt = Date.now();
    } finally {
      state.busy = false;
      updateRow(name, Date.now());
      schedule(0); // show what the service now says
    }
  }

  // ---- polling ----------------------------------------------------------------------------

  async function poll() {
    timer = null;
    if (document.hidden) return; // resumed by the visibilitychange listener
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    try {
      if (viewer === null) {
        viewer = await api("GET", "api/hubgate/whoami");
        document.body.classList.toggle("admin", Boolean(viewer.admin));
        document.getElementById("viewer").textContent =
          `Signed in as ${viewer.name}${viewer.admin ? " (admin)" : ""}`;
      }
      // stopped clusters too: the page keeps them listed for a while
      const statuses = "status=pending,running,stopping,stopped,failed";
      const query = viewer.admin ? `?all_users=1&${statuses}` : `?${statuses}`;
      const data = await api("GET", `api/hubgate/clusters${query}`);
      render(Array.isArray(data && data.clusters) ? data.clusters : []);
      showBanner(null);
      delay = POLL_MS;
    } catch (error) {
      console.error("hubgate: refreshing the cluster list failed", error);
      delay = Math.min(delay * 2, MAX_POLL_MS);
      showBanner(`${describe(error)} Retrying in ${Math.round(delay / 1000)} s.`);
    } finally {
      polling = false;
    }
    schedule(pollAgain ? 0 : delay);
    pollAgain = false;
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(poll, ms);
  }

  document.addEventListener("visibilitychange", () => schedule(0));
  showStopped.addEventListener("change", () => schedule(0));
  schedule(0);
})();
