// The admin REST API as the page sees it: the bearer token (kept in sessionStorage for this tab
// only, never in the URL, never logged), JSON requests, and refusals turned into ApiError with the
// API's own {"error", "reason"}.

const TOKEN_KEY = 'gateway.admin.token';

export class ApiError extends Error {
  constructor(status, code, reason) {
    super(reason);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
}

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token then lives only as long as this page */ }
}

let unauthorized = () => {};
/** `handler(error)` runs when a request is refused with 401 (token revoked or changed). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** '?a=1&b=2' from the defined values of `params` ('' when none). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/**
 * api('POST', '/api/rooms', body) -> parsed JSON (null for 204); throws ApiError.
 * `as: 'blob'` returns the body as a Blob (CSV download); `token` overrides the stored one (sign-in).
 */
export async function api(method, path, body, { as = 'json', token = getToken() } = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: as === 'json' ? 'application/json' : '*/*' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', '');
  }
  if (!response.ok) {
    let code = 'http_error';
    let reason = `HTTP ${response.status}`;
    try {
      const data = await response.json();
      code = data.error || code;
      reason = data.reason || reason;
    } catch { /* not JSON (a proxy's error page): keep the status */ }
    const error = new ApiError(response.status, code, reason);
    if (response.status === 401 && token === getToken()) unauthorized(error);
    throw error;
  }
  if (response.status === 204) return null;
  return as === 'blob' ? response.blob() : response.json();
}
