// The console's only way to the data: the same /v1 API every client uses, with
// the session cookie instead of a bearer header.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function csrf() {
  const m = /(?:^|;\s*)ledger_csrf=([^;]*)/.exec(document.cookie);
  return m ? decodeURIComponent(m[1]) : '';
}

/** A query string of the non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '' && v !== false) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function request(method, path, { params = {}, body, text = false } = {}) {
  const headers = { Accept: text ? 'text/plain' : 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path + query(params), {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    let b = null;
    try {
      b = await r.json();
    } catch {
      /* not JSON */
    }
    if (r.status === 401) window.dispatchEvent(new CustomEvent('ledger:logged-out'));
    throw new ApiError(r.status, b);
  }
  return text ? r.text() : r.json();
}

export const get = (path, params) => request('GET', path, { params });
export const getText = (path, params) => request('GET', path, { params, text: true });
export const post = (path, body, params) => request('POST', path, { body, params });

export async function logout() {
  await fetch('/console/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrf() }, credentials: 'same-origin' });
}
