// Billing on the integration page: the month's figures, the folders due an invoice (released here in
// approve mode), failed invoices (sent again), reserved ones (cancelled with a reason), the recent
// invoices with their PDF, and the month's CSV export.
//
// Loaded before integration.js, which calls BdcBilling.init() with the page's helpers (the token
// never leaves integration.js) and BdcBilling.load() on every refresh. Every value from the server is
// written with textContent.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const MODE_FR = {
    approve: "Mode approbation : un administrateur libère chaque dossier.",
    auto: "Mode automatique : chaque dossier dû reçoit son numéro et part chez Wedof sans attendre.",
    dry_run: "Mode simulation : rien n'est réservé ni envoyé.",
    off: "Facturation désactivée.",
  };
  const STATUS_FR = { reserved: "réservée", sent: "envoyée", billed: "facturée", paid: "payée", failed: "échec",
    cancelled: "annulée" };
  const EUR = new Intl.NumberFormat("fr-FR", { style: "currency", currency: "EUR" });
  let ctx = null;
  let mode = "off";

  function euros(amount) { return amount === null || amount === undefined ? "—" : EUR.format(Number(amount)); }
  function plural(n, word) { return n + " " + word + (n > 1 ? "s" : ""); }
  function say(text) { $("billing-message").textContent = text; }

  function thisMonth() {
    const now = new Date();
    return now.getFullYear() + "-" + String(now.getMonth() + 1).padStart(2, "0");
  }
  // The month picked, or null: then the server answers for the tenant's own month (its calendar dates the
  // invoices, not this browser's), and the picker shows it.
  function chosenMonth() { return /^\d{4}-\d{2}$/.test($("billing-month").value) ? $("billing-month").value : null; }
  function monthRange(value) {
    const [year, number] = value.split("-").map(Number);
    const last = new Date(year, number, 0).getDate();  // day 0 of the next month
    return { from: value + "-01", to: value + "-" + String(last).padStart(2, "0") };
  }

  function button(label, aria, onClick, cls) {
    const node = ctx.el("button", label, cls);
    node.type = "button";
    node.setAttribute("aria-label", aria);
    node.addEventListener("click", () => onClick(node));
    return node;
  }
  function cell(child) { const td = ctx.el("td"); if (child) td.appendChild(child); return td; }
  function emptyRow(body, text, columns) {
    const tr = ctx.el("tr");
    const td = ctx.el("td", text, "muted");
    td.colSpan = columns;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  function badge(status) { return ctx.el("span", STATUS_FR[status] || status, "badge " + status); }

  // -- what is shown ----------------------------------------------------------------------------------

  function showSummary(summary) {
    for (const name of ["to_bill", "billed", "paid", "failed"]) {
      const figure = summary[name];
      const tile = document.querySelector("#billing-totals [data-figure='" + name + "']");
      tile.dataset.count = figure.count;
      tile.querySelector("[data-field='amount']").textContent = euros(figure.amount_incl);
      let count = name === "to_bill" ? plural(figure.count, "dossier") : plural(figure.count, "facture");
      if (name === "to_bill" && figure.without_price) count += " dont " + figure.without_price + " sans prix";
      tile.querySelector("[data-field='count']").textContent = "(" + count + ")";
    }
    const flight = summary.reserved;
    $("billing-in-flight").textContent = flight.count
      ? "En cours d'envoi à Wedof : " + plural(flight.count, "facture") + ", " + euros(flight.amount_incl) + "."
      : "";
  }

  function showDue(due) {
    mode = due.mode;
    $("billing-mode").textContent = MODE_FR[mode] || mode;
    $("billing-mode").dataset.mode = mode;
    $("billing-dry-run").classList.toggle("hidden", mode !== "dry_run");
    $("billing-off").classList.toggle("hidden", mode !== "off");
    const releasable = due.items.filter((item) => item.next_number !== null);
    const releaseAll = $("billing-release-all");
    releaseAll.classList.toggle("hidden", mode !== "approve");
    releaseAll.disabled = releasable.length === 0;
    releaseAll.textContent = releasable.length ? "Tout libérer (" + releasable.length + ")" : "Tout libérer";
    const body = $("billing-due");
    body.textContent = "";
    for (const item of due.items) {
      const tr = ctx.el("tr");
      tr.dataset.enrollmentId = item.enrollment_id;
      const action = cell();
      if (mode === "approve" && item.next_number !== null) {
        action.appendChild(button("Libérer", "Libérer le dossier " + item.folder_number + " (facture " +
          item.next_number + ")", (node) => release(item, node)));
      }
      tr.append(ctx.el("td", item.folder_number), ctx.el("td", item.wedof_state),
        ctx.el("td", item.amounts ? euros(item.amounts.amount_incl) : "—"),
        ctx.el("td", item.next_number || "—", "code"), ctx.el("td", item.problem || "", "err"), action);
      body.appendChild(tr);
    }
    if (!due.items.length) emptyRow(body, "Aucun dossier à facturer.", 6);
  }

  function violationList(violations) {
    const list = ctx.el("ul", null, "violations");
    for (const v of violations || []) {
      const text = v && typeof v === "object"
        ? [v.propertyPath || v.field, v.message || v.title || JSON.stringify(v)].filter(Boolean).join(" : ")
        : String(v);
      list.appendChild(ctx.el("li", text));
    }
    return list.childNodes.length ? list : null;
  }

  function showFailed(items) {
    const body = $("billing-failed");
    body.textContent = "";
    for (const invoice of items) {
      const tr = ctx.el("tr");
      tr.dataset.invoiceId = invoice.id;
      tr.append(ctx.el("td", invoice.number, "code"), ctx.el("td", invoice.folder_number),
        ctx.el("td", euros(invoice.amount_incl)), ctx.el("td", invoice.reason || "", "err"),
        cell(violationList(invoice.violations)),
        cell(button("Réessayer", "Réessayer la facture " + invoice.number, (node) => retry(invoice, node))));
      body.appendChild(tr);
    }
    if (!items.length) emptyRow(body, "Aucune facture en échec.", 6);
  }

  function showReserved(items) {
    const body = $("billing-reserved");
    body.textContent = "";
    for (const invoice of items) {
      const tr = ctx.el("tr");
      tr.dataset.invoiceId = invoice.id;
      // Once sent (then failed and retried) Wedof may have seen the number: it can no longer be cancelled.
      const action = invoice.sent_at
        ? cell(ctx.el("span", "déjà envoyée une fois", "small muted"))
        : cell(button("Annuler", "Annuler la facture " + invoice.number, (node) => cancel(invoice, node), "secondary"));
      tr.append(ctx.el("td", invoice.number, "code"), ctx.el("td", invoice.folder_number),
        ctx.el("td", invoice.issue_date), ctx.el("td", euros(invoice.amount_incl)),
        ctx.el("td", invoice.released_by || "—"), action);
      body.appendChild(tr);
    }
    if (!items.length) emptyRow(body, "Aucune facture réservée.", 6);
  }

  function showRecent(items) {
    const body = $("billing-recent");
    body.textContent = "";
    for (const invoice of items) {
      const tr = ctx.el("tr");
      tr.dataset.invoiceId = invoice.id;
      tr.dataset.status = invoice.status;
      tr.append(ctx.el("td", invoice.number, "code"), ctx.el("td", invoice.issue_date),
        ctx.el("td", invoice.folder_number), ctx.el("td", invoice.beneficiary_name || ""),
        ctx.el("td", euros(invoice.amount_incl)), cell(badge(invoice.status)),
        cell(button("PDF", "Télécharger la facture " + invoice.number + " (PDF)",
          (node) => downloadPdf(invoice, node), "secondary pdf-btn")));
      body.appendChild(tr);
    }
    if (!items.length) emptyRow(body, "Aucune facture.", 7);
  }

  async function load() {
    const chosen = chosenMonth();
    try {
      const [summary, due, failed, reserved, recent] = await Promise.all([
        ctx.api("GET", "/invoices/summary" + (chosen ? "?month=" + chosen : "")),
        ctx.api("GET", "/invoices/due"),
        ctx.api("GET", "/invoices?status=failed&per_page=100"),
        ctx.api("GET", "/invoices?status=reserved&per_page=100"),
        ctx.api("GET", "/invoices?per_page=20"),
      ]);
      if (!chosen) $("billing-month").value = summary.month;
      showSummary(summary);
      showDue(due);
      showFailed(failed.items);
      showReserved(reserved.items);
      showRecent(recent.items);
    } catch (e) {
      if (e.status !== 401) say("Facturation indisponible : " + e.message);
    }
  }

  // -- what an admin does -------------------------------------------------------------------------------

  // Disable the button while the request runs; on success say so and reload the page's data.
  async function act(node, run) {
    node.disabled = true;
    try {
      say(await run());
    } catch (e) {
      say("Impossible : " + e.message);
      node.disabled = false;
      return;
    }
    await ctx.refresh();
  }

  function releasedText(r) {
    const numbers = r.released.map((invoice) => invoice.number).join(", ");
    const refused = Object.entries(r.not_released).map(([id, why]) => "#" + id + " : " + why).join(" ; ");
    return (r.released.length ? plural(r.released.length, "facture") + " réservée(s) (" + numbers +
      "), envoi à Wedof en cours." : "Aucune facture réservée.") + (refused ? " Non libérés : " + refused : "");
  }

  function release(item, node) {
    return act(node, async () => releasedText(await ctx.api("POST", "/invoices/release",
      { enrollment_ids: [item.enrollment_id] })));
  }

  function releaseAll(node) {
    if (!window.confirm("Libérer tous les dossiers à facturer ? Chacun reçoit son numéro de facture, " +
      "définitivement, et part chez Wedof.")) return;
    act(node, async () => releasedText(await ctx.api("POST", "/invoices/release", { all: true })));
  }

  function retry(invoice, node) {
    return act(node, async () => {
      const r = await ctx.api("POST", "/invoices/" + invoice.id + "/retry");
      return "Facture " + invoice.number + " : réservée à nouveau, renvoi à Wedof en cours (tâche " + r.task_id + ").";
    });
  }

  function cancel(invoice, node) {
    const reason = window.prompt("Motif de l'annulation de la facture " + invoice.number +
      " (son numéro reste utilisé) :");
    if (!reason || !reason.trim()) return;
    act(node, async () => {
      await ctx.api("POST", "/invoices/" + invoice.id + "/cancel", { reason: reason.trim() });
      return "Facture " + invoice.number + " annulée.";
    });
  }

  async function downloadPdf(invoice, node) {
    node.disabled = true;
    try { say("Téléchargée : " + await ctx.download("/invoices/" + invoice.id + "/pdf")); }
    catch (e) { say("Téléchargement impossible : " + e.message); }
    node.disabled = false;
  }

  async function exportMonth() {
    const value = chosenMonth() || thisMonth();
    const range = monthRange(value);
    try {
      say("Exportée : " + await ctx.download("/invoices/export.csv?from=" + range.from + "&to=" + range.to,
        "factures-" + value + ".csv"));
    } catch (e) { say("Export impossible : " + e.message); }
  }

  // ctx: { api(method, path, body), download(path, name?), el(tag, text, cls), refresh() }
  function init(helpers) {
    ctx = helpers;
    $("billing-month").addEventListener("change", () => load());
    $("billing-export").addEventListener("click", exportMonth);
    $("billing-release-all").addEventListener("click", (event) => releaseAll(event.currentTarget));
  }

  window.BdcBilling = { init, load };
})();
