// Integration page: reads the admin API with the operator's token; no framework, no build step.
// Every value from the server is written with textContent (event types and errors come from
// outside: never inserted as HTML).
(function () {
  "use strict";
  const API = document.body.dataset.apiBase;
  const KEY = "bdcWedofToken";
  const params = new URLSearchParams(window.location.search);
  const tenantId = params.get("tenant_id");
  const $ = (id) => document.getElementById(id);
  const STATUS_FR = { queued: "en file", running: "en cours", succeeded: "réussie", failed: "échec",
    skipped: "ignorée", received: "reçu", processing: "en traitement", processed: "traité", ignored: "ignoré" };
  const KIND_FR = { all: "tout", stagiaires: "stagiaires", formations: "formations" };
  const TRIGGER_FR = { manual: "manuel", schedule: "planifié", retry: "relance" };
  const ACTION_FR = { entry: "Entrée en formation", progress: "Taux d'avancement", end: "Service fait",
    abandon: "Abandon", cancel: "Annulation" };
  const ACTION_STATUS_FR = { proposed: "proposée", approved: "approuvée", sent: "envoyée", done: "faite",
    refused: "refusée", failed: "échec", blocked: "bloquée", cancelled: "annulée" };
  const ATTENTION = new Set(["proposed", "blocked", "refused", "failed"]);
  let pollTimer = null;

  // A token given in the address is kept for the tab, then removed from the visible URL and history.
  if (params.get("token") && !$("token-error")) {
    sessionStorage.setItem(KEY, params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }

  function token() { return sessionStorage.getItem(KEY); }

  function apiUrl(path) {
    const url = new URL(API + path, window.location.origin);
    if (tenantId) url.searchParams.set("tenant_id", tenantId);
    return url;
  }

  async function api(method, path, body) {
    const url = apiUrl(path);
    const init = { method, headers: { Authorization: "Bearer " + token() } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    const response = await fetch(url, init);
    let data = {};
    try { data = await response.json(); } catch (e) { data = { message: "réponse illisible" }; }
    if (response.status === 401) { showLogin(data.message || "Jeton refusé."); }
    if (!response.ok) { const err = new Error(data.message || ("HTTP " + response.status)); err.status = response.status; err.data = data; throw err; }
    return data;
  }

  // A file (an invoice PDF, a CSV): a plain link cannot carry the token's header, so it is fetched here
  // and saved from a blob. Resolves to the file name saved (``name``, else the server's).
  async function download(path, name) {
    const response = await fetch(apiUrl(path), { headers: { Authorization: "Bearer " + token() } });
    if (!response.ok) {
      let data = {};
      try { data = await response.json(); } catch (e) { data = {}; }
      if (response.status === 401) { showLogin(data.message || "Jeton refusé."); }
      const err = new Error(data.message || ("HTTP " + response.status)); err.status = response.status; throw err;
    }
    const blob = await response.blob();
    const given = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const filename = name || (given ? given[1] : "fichier");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    link.className = "hidden";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    return filename;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function badge(status) { return el("span", STATUS_FR[status] || status, "badge " + status); }
  function when(iso) { return iso ? new Date(iso).toLocaleString("fr-FR") : "—"; }

  function showLogin(message) {
    $("app").classList.add("hidden");
    $("logout").classList.add("hidden");
    $("login").classList.remove("hidden");
    if (message) { $("login-error").textContent = message; $("login-error").classList.remove("hidden"); }
  }

  async function loadStatus() {
    const s = await api("GET", "/status");
    $("tenant-name").textContent = s.tenant ? s.tenant.name : "";
    const state = $("connection-state");
    state.textContent = s.connected ? "Connecté" : (s.configured ? "Injoignable" : "Non configuré");
    state.className = "big " + (s.connected ? "ok" : "ko");
    $("connection-error").textContent = s.error || (s.wedof_user && s.wedof_user.email ? s.wedof_user.email : "");
    if (s.last_sync) {
      $("last-sync").textContent = "";
      $("last-sync").appendChild(badge(s.last_sync.status));
      $("last-sync-detail").textContent = when(s.last_sync.finished_at || s.last_sync.created_at) +
        " · " + s.last_sync.fetched + " lus, " + s.last_sync.applied + " appliqués";
    } else { $("last-sync").textContent = "Jamais"; $("last-sync-detail").textContent = ""; }
    const counts = $("event-counts");
    counts.textContent = "";
    for (const [name, n] of Object.entries(s.events_by_status || {})) {
      counts.appendChild(el("li", STATUS_FR[name] || name));
      counts.appendChild(el("li", n, name === "failed" && n ? "ko" : ""));
    }
    const q = s.queues || {};
    $("queues").textContent = q.error ? "Broker injoignable" : ("events " + q.events + " · sync " + q.sync);
    const c = s.connection;
    $("no-connection").classList.toggle("hidden", !!c);
    $("webhook-url").value = s.webhook_url || "";
    $("base-url").textContent = c ? c.base_url : "—";
    $("api-key-set").textContent = c && c.api_key_set ? "définie" : "non définie";
    $("secret-set").textContent = c && c.webhook_secret_set ? "défini" : "non défini";
  }

  async function loadHistory() {
    const page = await api("GET", "/sync-runs?per_page=10");
    const body = $("sync-history");
    body.textContent = "";
    for (const run of page.items) {
      const tr = el("tr");
      tr.dataset.runId = run.id;
      tr.append(el("td", run.id), el("td", when(run.started_at || run.created_at)), el("td", (KIND_FR[run.kind] || run.kind) + (run.full ? " (complète)" : "")),
        el("td", TRIGGER_FR[run.trigger] || run.trigger));
      const st = el("td"); st.appendChild(badge(run.status)); tr.appendChild(st);
      tr.append(el("td", run.fetched), el("td", run.applied), el("td", run.unchanged), el("td", run.failed),
        el("td", run.error || "", "err"));
      body.appendChild(tr);
    }
    if (!page.items.length) { const tr = el("tr"); const td = el("td", "Aucune synchronisation.", "muted"); td.colSpan = 10; tr.appendChild(td); body.appendChild(tr); }
  }

  async function loadFailedEvents() {
    const page = await api("GET", "/events?status=failed&per_page=50");
    const body = $("failed-events");
    body.textContent = "";
    for (const ev of page.items) {
      const tr = el("tr");
      tr.dataset.eventId = ev.id;
      tr.append(el("td", ev.id), el("td", when(ev.received_at)), el("td", ev.event_type), el("td", ev.folder_external_id || "—"),
        el("td", ev.attempts), el("td", ev.last_error || ev.status_reason || "", "err"));
      const flower = el("td");
      if (ev.flower_url) { const a = el("a", "tâche"); a.href = ev.flower_url; a.target = "_blank"; a.rel = "noopener"; flower.appendChild(a); }
      tr.appendChild(flower);
      const action = el("td");
      const button = el("button", "Relancer", "retry-btn");
      button.type = "button";
      button.dataset.eventId = ev.id;
      button.addEventListener("click", () => retryEvent(ev.id, button));
      action.appendChild(button);
      tr.appendChild(action);
      body.appendChild(tr);
    }
    $("retry-all").disabled = page.items.length === 0;
    if (!page.items.length) { const tr = el("tr"); const td = el("td", "Aucun événement en échec.", "muted"); td.colSpan = 8; tr.appendChild(td); body.appendChild(tr); }
  }

  async function retryEvent(id, button) {
    button.disabled = true;
    try {
      const r = await api("POST", "/events/" + id + "/retry");
      $("events-message").textContent = "Événement " + id + " relancé (tâche " + r.task_id + ").";
    } catch (e) { $("events-message").textContent = "Relance impossible : " + e.message; button.disabled = false; return; }
    await refresh();
  }

  function json(value) { return value === null || value === undefined ? "—" : JSON.stringify(value); }

  async function loadActions() {
    const page = await api("GET", "/lifecycle/actions?per_page=100");
    const all = $("actions-filter").value === "all";
    const body = $("lifecycle-actions");
    body.textContent = "";
    const shown = page.items.filter((a) => all || ATTENTION.has(a.status) || (a.late && a.status !== "done"));
    for (const action of shown) {
      const tr = el("tr");
      tr.dataset.actionId = action.id;
      tr.dataset.status = action.status;
      const folder = el("td");
      const view = el("button", action.external_id || ("#" + action.enrollment_id), "link-btn");
      view.type = "button";
      view.setAttribute("aria-label", "Voir le bilan du dossier " + (action.external_id || action.enrollment_id));
      view.addEventListener("click", () => showBilan(action.enrollment_id));
      folder.appendChild(view);
      const status = el("td");
      status.appendChild(el("span", ACTION_STATUS_FR[action.status] || action.status, "badge " + action.status));
      if (action.late) status.appendChild(el("span", "en retard", "badge late"));
      if (action.mode === "dry_run") status.appendChild(el("span", "simulation", "badge"));
      tr.append(el("td", action.id), folder, el("td", ACTION_FR[action.kind] || action.kind), status,
        el("td", json(action.body), "code"), el("td", json(action.evidence), "code"), el("td", action.reason || "", "err"));
      const cell = el("td");
      if (action.status === "proposed" && action.mode !== "dry_run") {
        cell.appendChild(actionButton("Approuver", "approve", action));
        cell.appendChild(actionButton("Rejeter", "reject", action, "secondary"));
      } else if (action.status === "blocked") {
        cell.appendChild(actionButton("Rejeter", "reject", action, "secondary"));
      } else if (action.status === "refused" || action.status === "failed") {
        cell.appendChild(actionButton("Renvoyer", "retry", action, "secondary"));
      }
      tr.appendChild(cell);
      body.appendChild(tr);
    }
    if (!shown.length) { const tr = el("tr"); const td = el("td", "Aucune déclaration à traiter.", "muted"); td.colSpan = 8; tr.appendChild(td); body.appendChild(tr); }
    const notices = await api("GET", "/notices?open=true&per_page=20");
    const list = $("notices");
    list.textContent = "";
    for (const notice of notices.items) {
      const li = el("li", when(notice.created_at) + " · " + notice.message);
      const read = el("button", "Marquer comme lu", "secondary");
      read.type = "button";
      read.addEventListener("click", async () => { await api("POST", "/notices/" + notice.id + "/acknowledge"); await refresh(); });
      li.appendChild(read);
      list.appendChild(li);
    }
    if (!notices.items.length) list.appendChild(el("li", "Aucun avis.", "muted"));
  }

  function actionButton(label, verb, action, cls) {
    const button = el("button", label, cls);
    button.type = "button";
    button.dataset.verb = verb;
    button.setAttribute("aria-label", label + " la déclaration " + action.id);
    button.addEventListener("click", () => decide(verb, action, button));
    return button;
  }

  async function decide(verb, action, button) {
    let body;
    if (verb === "reject") {
      const reason = window.prompt("Motif du rejet :");
      if (!reason) return;
      body = { reason };
    }
    button.disabled = true;
    try {
      await api("POST", "/lifecycle/actions/" + action.id + "/" + verb, body);
      $("actions-message").textContent = "Déclaration " + action.id + " : " +
        ({ approve: "approuvée, envoi en cours.", reject: "rejetée.", retry: "renvoyée." })[verb];
    } catch (e) { $("actions-message").textContent = "Impossible : " + e.message; button.disabled = false; return; }
    await refresh();
  }

  async function showBilan(enrollmentId) {
    const [evidence, history] = await Promise.all([
      api("GET", "/bilans/" + enrollmentId + "/appointments"),
      api("GET", "/lifecycle/actions?per_page=50&enrollment_id=" + enrollmentId)]);
    const e = evidence.evidence;
    $("bilan-title").textContent = "Bilan #" + enrollmentId;
    $("bilan-evidence").textContent = "Session du " + (e.session_start_date || "?") + " au " + (e.session_end_date || "?") +
      " · " + (e.indicative_duration_hours || "?") + " h · synthèse remise : " + (e.synthesis_delivered_on || "non") +
      " · retrait : " + (e.withdrawn_on || "non");
    const rows = $("bilan-appointments");
    rows.textContent = "";
    for (const a of evidence.items) {
      rows.appendChild(rowOf([a.id, a.phase, when(a.starts_at), when(a.ends_at), a.status,
        a.attended_minutes === null ? "—" : a.attended_minutes]));
    }
    if (!evidence.items.length) rows.appendChild(rowOf(["Aucune séance enregistrée."]));
    const acts = $("bilan-actions");
    acts.textContent = "";
    for (const a of history.items) {
      acts.appendChild(rowOf([a.id, ACTION_FR[a.kind] || a.kind, ACTION_STATUS_FR[a.status] || a.status, json(a.body),
        json(a.wedof_answer)]));
    }
    if (!history.items.length) acts.appendChild(rowOf(["Aucune déclaration."]));
    $("bilan").classList.remove("hidden");
    $("bilan-close").focus();
  }

  function rowOf(cells) {
    const tr = el("tr");
    for (const cell of cells) tr.appendChild(el("td", cell));
    return tr;
  }

  $("bilan-close").addEventListener("click", () => $("bilan").classList.add("hidden"));
  $("actions-filter").addEventListener("change", () => refresh());

  // Sections in modules of their own (static/billing.js, static/operations.js), loaded before this script.
  const sections = [window.BdcBilling, window.BdcOperations].filter(Boolean);
  for (const section of sections) section.init({ api, download, el, refresh: () => refresh() });

  async function refresh() {
    try {
      await Promise.all([loadStatus(), loadHistory(), loadFailedEvents(), loadActions(),
        ...sections.map((section) => section.load())]);
    } catch (e) { if (e.status !== 401) { $("events-message").textContent = "Erreur : " + e.message; } }
  }

  function showProgress(run) {
    const pct = run.status === "succeeded" ? 100 : (run.progress || 0);
    $("sync-progress-bar").style.width = pct + "%";
    const total = run.total === null || run.total === undefined ? "?" : run.total;
    $("sync-status").textContent = "Synchro #" + run.id + " : " + (STATUS_FR[run.status] || run.status) +
      " · " + run.fetched + " / " + total + " dossiers lus, " + run.applied + " appliqués, " + run.failed + " échecs" +
      (run.error ? " · " + run.error : "");
    $("sync-status").dataset.status = run.status;
  }

  async function poll(runId) {
    try {
      const run = await api("GET", "/sync-runs/" + runId);
      showProgress(run);
      if (run.status === "queued" || run.status === "running") { pollTimer = setTimeout(() => poll(runId), 1000); return; }
    } catch (e) { $("sync-status").textContent = "Suivi interrompu : " + e.message; }
    $("sync-now").disabled = false;
    await refresh();
  }

  $("sync-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(pollTimer);
    $("sync-now").disabled = true;
    $("sync-live").classList.remove("hidden");
    $("sync-progress-bar").style.width = "0";
    $("sync-status").textContent = "Demande envoyée…";
    try {
      const r = await api("POST", "/sync", { type: $("sync-type").value, full: $("sync-full").checked });
      poll(r.run_id);
    } catch (e) { $("sync-status").textContent = "Synchro impossible : " + e.message; $("sync-now").disabled = false; }
  });

  $("retry-all").addEventListener("click", async () => {
    try { const r = await api("POST", "/events/retry-failed"); $("events-message").textContent = r.retried + " événement(s) relancé(s)."; }
    catch (e) { $("events-message").textContent = "Relance impossible : " + e.message; }
    await refresh();
  });

  $("rotate-secret").addEventListener("click", async () => {
    if (!window.confirm("Régénérer le secret ? Wedof devra utiliser le nouveau secret immédiatement.")) return;
    try {
      const r = await api("POST", "/connection/rotate-secret");
      $("new-secret").textContent = "Nouveau secret (affiché une seule fois) : " + r.webhook_secret;
      $("new-secret").classList.remove("hidden");
    } catch (e) { $("config-message").textContent = "Impossible : " + e.message; }
  });

  $("register-webhook").addEventListener("click", async () => {
    try { const r = await api("POST", "/connection/register-webhook"); $("config-message").textContent = "Enregistrement demandé (tâche " + r.task_id + ")."; }
    catch (e) { $("config-message").textContent = "Impossible : " + e.message; }
  });

  $("copy-url").addEventListener("click", () => { $("webhook-url").select(); navigator.clipboard && navigator.clipboard.writeText($("webhook-url").value); });

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token-input").value.trim());
    $("token-input").value = "";
    start();
  });

  // Logging out revokes the token at the server too, so a copy of it (another tab, a history entry) stops
  // working; offline, it is still forgotten here.
  $("logout").addEventListener("click", async () => {
    try { await fetch(apiUrl("/token/revoke"), { method: "POST", headers: { Authorization: "Bearer " + token() } }); }
    catch (e) { /* the server is unreachable: nothing more to do */ }
    sessionStorage.removeItem(KEY);
    showLogin("");
  });

  function start() {
    if (!token()) { showLogin(""); return; }
    $("login").classList.add("hidden");
    $("login-error").classList.add("hidden");
    $("app").classList.remove("hidden");
    $("logout").classList.remove("hidden");
    refresh();
  }

  if (!$("token-error")) start();
})();
