// Thin client for the operator API (§8). Same origin, session cookie, CSRF header.

let csrfToken = null;
let onUnauthorized = () => {};

export function setCsrfToken(token) { csrfToken = token || null; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.type = type || 'error';
  }
}

async function call(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['Content-Type'] = 'application/json';
    if (csrfToken) headers['X-CSRF-Token'] = csrfToken;
    init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'Cannot reach the SudoMode server.');
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    const e = new ApiError(res.status, err.type, err.message || `${res.status} ${res.statusText}`);
    if (res.status === 401 && !quiet401) onUnauthorized(e);
    throw e;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

const enc = encodeURIComponent;

export const api = {
  getSession: () => call('GET', '/api/v1/session', undefined, { quiet401: true }),
  login: (token) => call('POST', '/api/v1/session', { token }, { quiet401: true }),
  logout: () => call('DELETE', '/api/v1/session', undefined, { quiet401: true }),
  listRequests: (params) => call('GET', `/api/v1/requests${query(params)}`),
  getRequest: (id) => call('GET', `/api/v1/requests/${enc(id)}`),
  approve: (id, reason) => call('POST', `/api/v1/requests/${enc(id)}/approve`, reason ? { reason } : {}),
  reject: (id, reason) => call('POST', `/api/v1/requests/${enc(id)}/reject`, reason ? { reason } : {}),
  policy: () => call('GET', '/api/v1/policy'),
  stats: () => call('GET', '/api/v1/stats'),
};

/**
 * Live request changes over SSE. onRequest(req) for each `request` event,
 * onOpen() on every (re)connect, onState('live'|'connecting'|'down').
 * EventSource reconnects by itself; if it gives up (CLOSED, e.g. after a 401
 * or a server restart) we retry with backoff. Returns a stop() function.
 */
export function subscribe({ onRequest, onOpen, onState }) {
  let es = null;
  let stopped = false;
  let retry = 1000;
  let timer = null;

  const handle = (ev) => {
    let req;
    try { req = JSON.parse(ev.data); } catch { return; }
    if (req && typeof req === 'object' && req.id) onRequest(req);
  };

  function connect() {
    if (stopped) return;
    onState('connecting');
    es = new EventSource('/api/v1/events', { withCredentials: true });
    es.addEventListener('request', handle);
    es.addEventListener('message', handle);
    es.addEventListener('open', () => { retry = 1000; onState('live'); onOpen(); });
    es.addEventListener('error', () => {
      if (stopped) return;
      if (es.readyState === EventSource.CLOSED) {
        onState('down');
        es.close();
        timer = setTimeout(async () => {
          try { await api.getSession(); } catch (e) {
            if (e.status === 401) { onUnauthorized(e); return; }
          }
          connect();
        }, retry);
        retry = Math.min(retry * 2, 30000);
      } else {
        onState('connecting');
      }
    });
  }
  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (es) es.close();
  };
}
