// The REST API client: every call carries the signed-in token; every refusal becomes an
// ApiError with the server's code, message and remedy (docs/errors.md).

const TOKEN_KEY = "vmvault.token";
const VAULT_KEY = "vmvault.vault";

export class ApiError extends Error {
  constructor(status, code, message, remedy) {
    super(message);
    this.status = status;
    this.code = code;
    this.remedy = remedy;
  }
}

// A call held for approval (docs/approvals.md): the server answered 202 with the pending
// request instead of doing it — neither a success nor a refusal. `api` returns one in place
// of the call's document; ui.js shows it as "held for approval: request N" (`showHeld`).
export class Held {
  constructor(request) { Object.assign(this, request); }
}
const isRequest = (doc) => doc !== null && typeof doc === "object" && !Array.isArray(doc)
  && typeof doc.id === "number" && typeof doc.operation === "string" && "requested_by" in doc;

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  // The vault chosen in the header's picker (null: let the server choose its default).
  get vault() { return sessionStorage.getItem(VAULT_KEY); },
  set vault(value) {
    if (value) sessionStorage.setItem(VAULT_KEY, value);
    else sessionStorage.removeItem(VAULT_KEY);
  },
  principal: null, // {name, role} from GET /whoami
};

// The calls that take a vault (api/routes/*.py, api/requests.py): in the query of these
// GET/DELETE paths, in the body of these POST paths. Each gets the chosen one unless the
// caller names a vault itself. Not POST /points/ID/undelete (no vault: every vault holding
// the point) nor copies and restores (their vaults are from_vault/to_vault, chosen per call).
const VAULT_IN_QUERY = [
  /^GET \/(dashboard|vms|points|points\/deleted|policies|protection|notifications)$/,
  /^DELETE \/points\/[^/]+$/,
];
const VAULT_IN_BODY = /^POST \/(backups|verify|gc|vms\/(discover|register|unregister)|policies|policies\/preview|protection(\/(stop|resume))?|notifications|notifications\/test)$/;

// The one place a request gets the chosen vault. A caller that names `vault` itself keeps
// it; `vault: null` in the query means none (e.g. DELETE /points/ID from every vault).
function withVault(method, path, params, body) {
  const vault = session.vault;
  const call = `${method} ${path}`;
  if (!vault) return { params, body };
  if (VAULT_IN_QUERY.some((re) => re.test(call)) && !(params && "vault" in params)) {
    return { params: { ...(params || {}), vault }, body };
  }
  if (VAULT_IN_BODY.test(call) && body && typeof body === "object" && !Array.isArray(body)
      && !body.vault) {
    return { params, body: { ...body, vault } };
  }
  return { params, body };
}

// Called when the server answers VAULT_NOT_CHOSEN to a call made without a chosen vault
// (several vaults, no server default): the handler chooses one and answers true to retry.
let onVaultNotChosen = async () => false;
export function whenVaultNotChosen(handler) { onVaultNotChosen = handler; }

// Called when the server answers 401 (token revoked or unknown): the app signs out.
let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((item) => q.append(k, item)); // ?path=a&path=b
    else if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function send(method, url, headers, body) {
  try {
    return await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, "SERVER_UNREACHABLE", `the server did not answer (${err.message})`,
      "check that 'vmvault serve' is running, then try again");
  }
}

// A refusal as an ApiError: the server's {error: {code, message, remedy}}.
function refusal(response, text) {
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
  const e = doc && doc.error ? doc.error : {};
  return new ApiError(response.status, e.code || `HTTP_${response.status}`,
    e.message || response.statusText || "the request failed", e.remedy || "");
}

async function call(method, path, { body, params, token } = {}) {
  const chosen = session.vault;
  ({ params, body } = withVault(method, path, params, body));
  const headers = { Accept: "application/json" };
  const auth = token ?? session.token;
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await send(method, `/api/v1${path}${query(params)}`, headers, body);
  const text = await response.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
  if (!response.ok) {
    const err = refusal(response, text);
    if (response.status === 401 && token === undefined) onUnauthorized(err);
    if (err.code === "VAULT_NOT_CHOSEN" && !chosen && (await onVaultNotChosen(err))) {
      return call(method, path, { body, params, token });
    }
    throw err;
  }
  if (response.status === 202 && isRequest(doc)) return { doc: new Held(doc), total: null };
  const total = response.headers.get("X-Total-Count");
  return { doc, total: total === null ? null : Number(total) };
}

export const api = {
  get: async (path, params) => (await call("GET", path, { params })).doc,
  page: (path, params) => call("GET", path, { params }),  // {doc, total}
  // every item of a paged list (/vms, /protection, /points, /policies, /hosts), 1000 at a time
  all: async (path, params) => {
    const items = [];
    for (;;) {
      const { doc, total } = await call("GET", path, { params: { ...params, limit: 1000, offset: items.length } });
      items.push(...doc);
      if (!doc.length || total === null || items.length >= total) return items;
    }
  },
  post: async (path, body) => (await call("POST", path, { body: body ?? {} })).doc,
  patch: async (path, body) => (await call("PATCH", path, { body })).doc,
  del: async (path, params) => (await call("DELETE", path, { params })).doc,
  whoami: async (token) => (await call("GET", "/whoami", { token })).doc,
  vaults: async () => (await call("GET", "/vaults")).doc,
  // GET a file's bytes (a download): {blob, name}, the name from Content-Disposition. A link
  // cannot carry the token, so the bytes come through fetch and are saved by saveBlob (ui.js).
  blob: async (path, params) => {
    const response = await send("GET", `/api/v1${path}${query(params)}`,
      { Accept: "application/octet-stream, application/json", Authorization: `Bearer ${session.token}` });
    if (!response.ok) {
      const err = refusal(response, await response.text());
      if (response.status === 401) onUnauthorized(err);
      throw err;
    }
    const disposition = response.headers.get("Content-Disposition") || "";
    const m = /filename\*=utf-8''([^;]+)/i.exec(disposition) || /filename="?([^";]+)"?/i.exec(disposition);
    return { blob: await response.blob(), name: m ? decodeURIComponent(m[1]) : "download" };
  },
};

// Roles in order (domain/access.py): each one may do what the ones before it may.
const ROLES = ["reader", "operator", "contributor", "admin"];
export function can(needed) {
  const role = session.principal ? session.principal.role : null;
  return role !== null && ROLES.indexOf(role) >= ROLES.indexOf(needed);
}
