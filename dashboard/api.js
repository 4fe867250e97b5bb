// Thin client for the operator API (§8). Same origin; the session token the
// sign-in returned is kept in sessionStorage (this tab, this origin only) and
// sent as `Authorization: Bearer`. No cookie is used: browsers send cookies
// for 127.0.0.1 to every port, including a page an agent serves.

const STORAGE_KEY = 'sudomode.session';
let onUnauthorized = () => {};

function storage() {
  try { return window.sessionStorage; } catch { return null; }
}

export function sessionToken() { return storage()?.getItem(STORAGE_KEY) || null; }
export function setSessionToken(token) {
  const s = storage();
  if (!s) return;
  if (token) s.setItem(STORAGE_KEY, token);
  else s.removeItem(STORAGE_KEY);
}
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function authHeaders(extra = {}) {
  const token = sessionToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.type = type || 'error';
  }
}

async function call(method, path, body, { quiet401 = false } = {}) {
  const headers = authHeaders({ Accept: 'application/json' });
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['Content-Type'] = 'application/json';
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
  approve: (id, reason, extra = {}) => call('POST', `/api/v1/requests/${enc(id)}/approve`, { ...(reason ? { reason } : {}), ...extra }),
  reject: (id, reason) => call('POST', `/api/v1/requests/${enc(id)}/reject`, reason ? { reason } : {}),
  policy: () => call('GET', '/api/v1/policy'),
  grants: (params) => call('GET', `/api/v1/grants${query(params)}`),
  revokeGrant: (id) => call('DELETE', `/api/v1/grants/${enc(id)}`),
  stats: () => call('GET', '/api/v1/stats'),
};

/**
 * Split an SSE byte stream's text into events: [{event, data}] for every
 * complete event in `buffer`, and the unfinished rest.
 */
export function parseSse(buffer) {
  const events = [];
  const text = buffer.replace(/\r\n?/g, '\n');
  const blocks = text.split('\n\n');
  const rest = blocks.pop();
  for (const block of blocks) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i === -1 ? line : line.slice(0, i);
      let value = i === -1 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) events.push({ event, data: data.join('\n') });
  }
  return { events, rest };
}

/**
 * Live request changes over SSE, read with fetch so the session token goes
 * in the Authorization header (EventSource cannot send one).
 * onRequest(req) for each `request` event, onOpen() on every (re)connect,
 * onState('live'|'connecting'|'down'). Reconnects with backoff; a 401 (the
 * session ended, e.g. signed out elsewhere) calls the unauthorized handler.
 * Returns a stop() function.
 */
export function subscribe({ onRequest, onOpen, onState }) {
  let stopped = false;
  let retry = 1000;
  let timer = null;
  let controller = null;

  const handle = (data) => {
    let req;
    try { req = JSON.parse(data); } catch { return; }
    if (req && typeof req === 'object' && req.id) onRequest(req);
  };

  async function connect() {
    if (stopped) return;
    onState('connecting');
    controller = new AbortController();
    try {
      const res = await fetch('/api/v1/events', {
        headers: authHeaders({ Accept: 'text/event-stream' }),
        credentials: 'omit', cache: 'no-store', signal: controller.signal,
      });
      if (res.status === 401) {
        onState('down');
        onUnauthorized(new ApiError(401, 'unauthorized', 'session ended'));
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      retry = 1000;
      onState('live');
      onOpen();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const { events, rest } = parseSse(buffer + value);
        buffer = rest;
        for (const ev of events) if (ev.event === 'request' || ev.event === 'message') handle(ev.data);
      }
    } catch (e) {
      if (stopped) return;
    }
    if (stopped) return;
    // The stream ended (server restart, sign-out elsewhere, network): retry.
    onState('down');
    timer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  }
  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}
