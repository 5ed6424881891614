// Operations ("Exploitation") on the integration page: the last reconciliation report (Wedof's counts
// against ours), the changes seen in Wedof's API, and four small charts (drift over time, webhooks per
// hour, failed webhooks per hour, sync durations), drawn here as plain inline SVG: no library, no CDN.
//
// Each chart is an <svg role="img"> with a <title> and a <desc> saying what it shows, every point
// carries its value (data-value and a <title> tooltip), and the same values are in a table under it.
// Loaded before integration.js, which calls BdcOperations.init() with the page's helpers (the token never
// leaves integration.js) and BdcOperations.load() on every refresh. Server values go in with textContent
// or setAttribute only.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const STATUS_FR = { ok: "concordant", drift: "écart", failed: "échec" };
  const W = 480, H = 170, PAD = { left: 40, right: 10, top: 12, bottom: 24 };
  let ctx = null;
  let lastReportId = null;
  let watching = null;

  function say(text) { $("operations-message").textContent = text; }
  function when(iso) { return iso ? new Date(iso).toLocaleString("fr-FR") : "—"; }
  function hourLabel(iso) {
    const d = new Date(iso);
    return String(d.getDate()).padStart(2, "0") + "/" + String(d.getMonth() + 1).padStart(2, "0") + " " +
      String(d.getHours()).padStart(2, "0") + " h";
  }
  function node(tag, attrs) {
    const n = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) n.setAttribute(name, String(value));
    return n;
  }
  function svgText(x, y, text, cls, anchor) {
    const t = node("text", { x, y, class: cls || "axis", "text-anchor": anchor || "start" });
    t.textContent = text;
    return t;
  }
  function niceMax(value) {
    if (value <= 5) return 5;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) { if (m * step >= value) return m * step; }
    return 10 * step;
  }
  function format(value) {
    return Number.isInteger(value) ? String(value) : value.toLocaleString("fr-FR", { maximumFractionDigits: 2 });
  }

  // points: [{label, value (number or null: nothing measured), note}]; kind "bar" or "line".
  function drawChart(figureId, kind, points, unit, empty) {
    const figure = $(figureId);
    const plot = figure.querySelector(".chart-plot");
    const table = figure.querySelector(".chart-table");
    const caption = figure.querySelector("figcaption").textContent;
    plot.textContent = "";
    table.textContent = "";
    const measured = points.filter((p) => p.value !== null);
    figure.dataset.points = measured.length;
    if (!points.length) { plot.appendChild(ctx.el("p", empty, "small muted")); return; }
    const values = measured.map((p) => p.value);
    const top = niceMax(Math.max(0, ...values));
    const innerW = W - PAD.left - PAD.right, innerH = H - PAD.top - PAD.bottom;
    const y = (v) => PAD.top + innerH - (v / top) * innerH;
    const slot = innerW / points.length;
    const x = (i) => PAD.left + slot * i + slot / 2;
    const ids = figureId + "-svg";
    // Classes of their own ("column", not "bar": the page's progress bar owns that one).
    const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg chart-" + kind,
      "aria-labelledby": ids + "-title " + ids + "-desc", "data-kind": kind, "data-points": measured.length,
      preserveAspectRatio: "xMidYMid meet" });
    const title = node("title", { id: ids + "-title" });
    title.textContent = caption;
    const last = measured.length ? measured[measured.length - 1] : null;
    const desc = node("desc", { id: ids + "-desc" });
    desc.textContent = measured.length
      ? measured.length + " valeurs du " + points[0].label + " au " + points[points.length - 1].label +
        " ; maximum " + format(Math.max(...values)) + " " + unit + " ; dernière " + format(last.value) + " " + unit + "."
      : "Aucune valeur mesurée.";
    svg.append(title, desc);
    for (const tick of [0, top / 2, top]) {
      svg.appendChild(node("line", { x1: PAD.left, x2: W - PAD.right, y1: y(tick), y2: y(tick), class: "grid" }));
      svg.appendChild(svgText(PAD.left - 4, y(tick) + 3, format(tick), "axis", "end"));
    }
    svg.appendChild(svgText(PAD.left, H - 6, points[0].label, "axis", "start"));
    svg.appendChild(svgText(W - PAD.right, H - 6, points[points.length - 1].label, "axis", "end"));
    if (kind === "line" && measured.length > 1) {
      const path = points.map((p, i) => (p.value === null ? null : x(i).toFixed(1) + "," + y(p.value).toFixed(1)))
        .filter(Boolean).join(" ");
      svg.appendChild(node("polyline", { points: path, class: "series" }));
    }
    points.forEach((p, i) => {
      let mark;
      if (p.value === null) {  // nothing measured (a failed report): a hollow mark on the base line
        mark = node("circle", { cx: x(i), cy: y(0), r: 3.5, class: "gap" });
      } else if (kind === "bar") {
        const h = Math.max(p.value > 0 ? 1 : 0, y(0) - y(p.value));
        const width = Math.min(28, Math.max(2, slot * 0.7));
        mark = node("rect", { x: x(i) - width / 2, y: y(0) - h, width, height: h, class: "column point" });
      } else {
        mark = node("circle", { cx: x(i), cy: y(p.value), r: 3.5, class: "point" + (p.value > 0 ? " bad" : "") });
      }
      mark.setAttribute("data-value", p.value === null ? "" : String(p.value));
      const tip = node("title");
      tip.textContent = p.label + " : " + (p.value === null ? (p.note || "non mesuré") : format(p.value) + " " + unit) +
        (p.value !== null && p.note ? " (" + p.note + ")" : "");
      mark.appendChild(tip);
      svg.appendChild(mark);
    });
    plot.appendChild(svg);
    const head = ctx.el("tr");
    head.append(ctx.el("th", "Moment"), ctx.el("th", "Valeur (" + unit + ")"));
    table.appendChild(head);
    for (const p of points) {
      const tr = ctx.el("tr");
      tr.append(ctx.el("td", p.label), ctx.el("td", p.value === null ? (p.note || "—") : format(p.value) +
        (p.note ? " · " + p.note : "")));
      table.appendChild(tr);
    }
  }

  function countRows(bodyId, wedof, local) {
    const body = $(bodyId);
    body.textContent = "";
    const names = Object.keys(wedof || {});
    for (const name of Object.keys(local || {})) if (!names.includes(name)) names.push(name);
    for (const name of names) {
      const theirs = (wedof || {})[name] || 0, ours = (local || {})[name] || 0;
      const tr = ctx.el("tr", null, theirs !== ours ? "differs" : "");
      tr.dataset.state = name;
      tr.append(ctx.el("th", name === "other" ? "autre" : name), ctx.el("td", theirs), ctx.el("td", ours),
        ctx.el("td", theirs === ours ? "" : (theirs > ours ? "+" : "") + (theirs - ours), theirs !== ours ? "ko" : ""));
      tr.firstChild.setAttribute("scope", "row");
      body.appendChild(tr);
    }
    if (!names.length) {
      const tr = ctx.el("tr");
      const td = ctx.el("td", "Pas encore de rapport.", "muted");
      td.colSpan = 4;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  function showReport(report) {
    const summary = $("reconcile-summary");
    summary.textContent = "";
    summary.dataset.status = report ? report.status : "";
    lastReportId = report ? report.id : null;
    countRows("reconcile-states", report && report.wedof_states, report && report.local_states);
    countRows("reconcile-billing", report && report.wedof_billing, report && report.local_billing);
    if (!report) { summary.textContent = "Aucun rapport pour l'instant : la comparaison tourne chaque heure."; return; }
    summary.appendChild(ctx.el("span", STATUS_FR[report.status] || report.status, "badge " + report.status));
    const d = report.details || {};
    let text = " Rapport #" + report.id + " du " + when(report.created_at);
    if (report.status === "failed") {
      text += " : " + (report.error || "Wedof n'a pas pu être lu") + ".";
    } else {
      const total = d.total || {};
      text += " · écart " + report.drift + " · Wedof " + (total.wedof ?? "?") + " dossiers, chez nous " +
        (total.local ?? "?") + " · dernier changement Wedof " + when(report.wedof_newest_update) + ", chez nous " +
        when(report.local_newest_update) + ".";
      if (d.behind) text += " Des changements de Wedof ne sont pas encore appliqués.";
      if (report.sync_run_id) text += " Synchronisation #" + report.sync_run_id + " " + (d.sync || "demandée") + ".";
      if (d.inbox_unfinished) text += " " + d.inbox_unfinished + " webhook(s) encore en traitement.";
    }
    summary.appendChild(ctx.el("span", text, report.status === "failed" ? "err" : ""));
  }

  function showApiDrift(drift) {
    const summary = $("api-drift-summary");
    const list = $("api-drift-keys");
    list.textContent = "";
    const current = drift.current;
    const keys = current ? current.unknown_keys.length + current.missing_keys.length : 0;
    summary.dataset.drift = !current ? "none" : (keys ? "changed" : "cleared");
    if (!current) {
      summary.textContent = "Aucun changement constaté : les dossiers lus ont les clés que la correspondance connaît.";
      return;
    }
    if (!keys) {
      summary.textContent = "Retour à la normale depuis le " + when(current.observed_at) + ".";
    } else {
      summary.textContent = "L'API de Wedof a changé le " + when(current.observed_at) + " (vu pour la dernière fois le " +
        when(current.last_seen_at) + ", " + current.samples + " dossier(s) lus depuis). Les dossiers restent appliqués.";
    }
    for (const key of current.unknown_keys) {
      const li = ctx.el("li", null, "unknown");
      li.dataset.key = key;
      li.append(ctx.el("span", "clé inconnue", "badge drift"), ctx.el("code", key));
      list.appendChild(li);
    }
    for (const key of current.missing_keys) {
      const li = ctx.el("li", null, "missing");
      li.dataset.key = key;
      li.append(ctx.el("span", "clé attendue absente", "badge failed"), ctx.el("code", key));
      list.appendChild(li);
    }
    if (drift.history.length > 1) {
      const li = ctx.el("li", "Changements précédents : " + drift.history.slice(1).map((h) => when(h.observed_at) + " (" +
        (h.unknown_keys.length + h.missing_keys.length) + " clé(s))").join(" ; "), "small muted");
      list.appendChild(li);
    }
  }

  function showCharts(data) {
    drawChart("chart-drift", "line", data.reconciliation.series.map((r) => ({
      label: when(r.created_at), value: r.status === "failed" ? null : r.drift,
      note: r.status === "failed" ? "échec : " + (r.error || "Wedof illisible") : STATUS_FR[r.status] })),
    "dossiers", "Pas encore de rapport de réconciliation.");
    const hours = data.deliveries.series;
    drawChart("chart-deliveries", "bar", hours.map((h) => ({ label: hourLabel(h.hour), value: h.deliveries })),
      "webhooks", "Aucune connexion.");
    drawChart("chart-failures", "bar", hours.map((h) => ({ label: hourLabel(h.hour), value: h.failures })),
      "échecs", "Aucune connexion.");
    drawChart("chart-sync", "bar", data.sync_runs.map((r) => ({
      label: "#" + r.id + " " + when(r.started_at), value: r.duration_seconds,
      note: r.status + ", " + r.fetched + " lus" })), "s", "Aucune synchronisation terminée.");
  }

  async function load() {
    const data = await ctx.api("GET", "/operations");
    showReport(data.reconciliation.last);
    showApiDrift(data.api_drift);
    showCharts(data);
    $("reconcile-now").disabled = data.connection_id === null;
    return data;
  }

  // After "Comparer maintenant": reload until the new report is there (the worker takes a few seconds).
  function watchForReport(previous, tries) {
    clearTimeout(watching);
    watching = setTimeout(async () => {
      try { await load(); } catch (e) { say("Suivi interrompu : " + e.message); return; }
      if (lastReportId !== previous) { say("Nouveau rapport #" + lastReportId + "."); $("reconcile-now").disabled = false; return; }
      if (tries > 1) watchForReport(previous, tries - 1);
      else { say("Le rapport n'est pas encore là ; il apparaîtra au prochain rafraîchissement."); $("reconcile-now").disabled = false; }
    }, 1500);
  }

  async function reconcileNow(button) {
    button.disabled = true;
    try {
      const r = await ctx.api("POST", "/reconcile");
      say("Comparaison demandée (tâche " + r.task_id + ").");
      watchForReport(lastReportId, 40);
    } catch (e) { say("Comparaison impossible : " + e.message); button.disabled = false; }
  }

  // ctx: { api(method, path, body), download(path, name?), el(tag, text, cls), refresh() }
  function init(helpers) {
    ctx = helpers;
    $("reconcile-now").addEventListener("click", (event) => reconcileNow(event.currentTarget));
  }

  window.BdcOperations = { init, load };
})();
