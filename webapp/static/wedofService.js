// wedofService.js: the BDC React client's access to this service's Wedof integration API.
//
//   import { createWedofService } from "https://<this service>/static/wedofService.js";
//   const wedof = createWedofService({ baseUrl: "https://<this service>", getToken: () => auth.token });
//   const { items, total } = await wedof.getStagiaires(1, 20);
//
// Every method returns the API's JSON (a Blob for a PDF) and throws a WedofServiceError carrying the
// API's {error, message} and the HTTP status when the call is refused. No dependency, no build step.

const API_PATH = "/api/integrations/wedof";

export class WedofServiceError extends Error {
  constructor(status, error, message, body = null) {
    super(message || error || `HTTP ${status}`);
    this.name = "WedofServiceError";
    this.status = status; // 0 when no answer came (network error)
    this.error = error; // the API's snake_case code, e.g. "not_retryable"
    this.body = body; // the whole JSON answer, e.g. its "fields" for a validation error
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

function pageParams(page, perPage, filters) {
  return { ...(filters || {}), page: page ?? 1, per_page: perPage ?? 20 };
}

export class WedofService {
  /**
   * @param {{baseUrl?: string, getToken: () => (string|null|Promise<string|null>), fetch?: typeof fetch}} options
   */
  constructor({ baseUrl = "", getToken, fetch: fetchImpl } = {}) {
    if (typeof getToken !== "function") throw new TypeError("getToken must be a function returning the JWT");
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
    this.getToken = getToken;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  async request(method, path, { body, params, binary = false } = {}) {
    const headers = { Accept: binary ? "application/pdf" : "application/json" };
    const token = await this.getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await this.fetch(`${this.baseUrl}${API_PATH}${path}${query(params)}`, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (cause) {
      throw new WedofServiceError(0, "network_error", `The service did not answer: ${cause.message}`);
    }
    if (!response.ok) {
      let answer = null;
      try { answer = await response.json(); } catch { /* not JSON: the status says enough */ }
      throw new WedofServiceError(response.status, answer?.error || "http_error",
        answer?.message || `HTTP ${response.status}`, answer);
    }
    if (binary) return response.blob();
    return response.status === 204 ? null : response.json();
  }

  // -- the integration notes' methods --
  getStatus() { return this.request("GET", "/status"); }
  /** type: "all" | "stagiaires" | "formations"; full: a full sync instead of an incremental one. */
  syncData(type = "all", { full = false } = {}) { return this.request("POST", "/sync", { body: { type, full } }); }
  getStagiaires(page, perPage, filters) { return this.request("GET", "/stagiaires", { params: pageParams(page, perPage, filters) }); }
  getFormations(page, perPage, filters) { return this.request("GET", "/formations", { params: pageParams(page, perPage, filters) }); }
  /** Not available yet: kept under the notes' name so the client can show why. */
  async createAIAnalysis(bilanId, options = {}) { // eslint-disable-line no-unused-vars
    throw new WedofServiceError(501, "not_available",
      "The AI analysis of a bilan is not available in this service yet.");
  }

  // -- bilans, the inbox, syncs --
  getBilans(page, perPage, filters) { return this.request("GET", "/bilans", { params: pageParams(page, perPage, filters) }); }
  getEvents(filters, page, perPage) { return this.request("GET", "/events", { params: pageParams(page, perPage, filters) }); }
  retryEvent(eventId) { return this.request("POST", `/events/${encodeURIComponent(eventId)}/retry`, { body: {} }); }
  getSyncRun(runId) { return this.request("GET", `/sync-runs/${encodeURIComponent(runId)}`); }
  getSyncRuns(page, perPage) { return this.request("GET", "/sync-runs", { params: pageParams(page, perPage) }); }

  // -- lifecycle declarations --
  getLifecycleActions(filters, page, perPage) { return this.request("GET", "/lifecycle/actions", { params: pageParams(page, perPage, filters) }); }
  approveAction(actionId) { return this.request("POST", `/lifecycle/actions/${encodeURIComponent(actionId)}/approve`, { body: {} }); }
  rejectAction(actionId, reason) { return this.request("POST", `/lifecycle/actions/${encodeURIComponent(actionId)}/reject`, { body: { reason } }); }
  retryAction(actionId) { return this.request("POST", `/lifecycle/actions/${encodeURIComponent(actionId)}/retry`, { body: {} }); }

  // -- billing --
  getInvoices(filters, page, perPage) { return this.request("GET", "/invoices", { params: pageParams(page, perPage, filters) }); }
  getInvoice(invoiceId) { return this.request("GET", `/invoices/${encodeURIComponent(invoiceId)}`); }
  downloadInvoicePdf(invoiceId) { return this.request("GET", `/invoices/${encodeURIComponent(invoiceId)}/pdf`, { binary: true }); }
  /** enrollmentIds: the bilans whose invoices are released; or { all: true }. */
  releaseInvoices(enrollmentIds) {
    const body = enrollmentIds && enrollmentIds.all ? { all: true } : { enrollment_ids: enrollmentIds };
    return this.request("POST", "/invoices/release", { body });
  }
  retryInvoice(invoiceId) { return this.request("POST", `/invoices/${encodeURIComponent(invoiceId)}/retry`, { body: {} }); }
  cancelInvoice(invoiceId, reason) { return this.request("POST", `/invoices/${encodeURIComponent(invoiceId)}/cancel`, { body: { reason } }); }
}

export function createWedofService(options) { return new WedofService(options); }
export default createWedofService;
