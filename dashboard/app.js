// Entry point: session, header, hash router, live updates.
import { api, sessionToken, setSessionToken, setUnauthorizedHandler, subscribe } from './api.js';
import { h, fill, startTicker } from './dom.js';
import { loginView } from './views/login.js';
import { pendingView } from './views/pending.js';
import { historyView } from './views/history.js';
import { detailView } from './views/detail.js';
import { policyView } from './views/policy.js';
import { grantsView } from './views/grants.js';

const root = document.getElementById('app');
let session = null;
let current = null; // mounted view: {onRequest?, onReconnect?, unmount?}
let stopEvents = null;
let shell = null;
let statsTimer = null;

const NAV = [
  ['#/pending', 'Pending', 'pending'],
  ['#/history', 'History', 'history'],
  ['#/grants', 'Grants', 'grants'],
  ['#/policy', 'Policy', 'policy'],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/pending';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, params: new URLSearchParams(qs || '') };
}

export function navigate(href) {
  if (location.hash === href) route();
  else location.hash = href;
}

function route() {
  if (!session || !shell) return;
  const { parts, params } = parseHash();
  if (current && current.unmount) current.unmount();
  current = null;
  const ctx = { session, navigate };
  let section = parts[0];
  const main = shell.main;
  if (section === 'pending') current = pendingView(main, ctx);
  else if (section === 'history') current = historyView(main, ctx, params);
  else if (section === 'requests' && parts[1]) { current = detailView(main, ctx, params, parts[1]); section = 'history'; }
  else if (section === 'policy') current = policyView(main, ctx);
  else if (section === 'grants') current = grantsView(main, ctx);
  else { history.replaceState(null, '', '#/pending'); section = 'pending'; current = pendingView(main, ctx); }
  for (const a of shell.nav.querySelectorAll('a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function statItem(label, cls, testid) {
  const value = h('span', { class: 'stat-value', 'data-testid': testid }, '–');
  return { el: h('span', { class: `stat ${cls}`, title: label }, h('span', { class: 'stat-label' }, label), value), value };
}

function buildShell() {
  const stats = {
    allow: statItem('allow', 'allow', 'stats-allow'),
    deny: statItem('deny', 'deny', 'stats-deny'),
    approval: statItem('approval', 'approval', 'stats-approval'),
    pending: statItem('pending', 'pending', 'stats-pending'),
  };
  const pendingBadge = h('span', { class: 'nav-count', hidden: true });
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' }, NAV.map(([href, label, sec]) =>
    h('a', { href, 'data-section': sec }, label, sec === 'pending' ? pendingBadge : null)));
  const live = h('span', { class: 'live connecting', role: 'status', title: 'Live updates' }, 'connecting');
  const op = session.operator || {};
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/pending' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '#'), 'SudoMode'),
    nav,
    h('div', { class: 'stats', 'aria-label': 'Counts by decision' },
      stats.allow.el, stats.deny.el, stats.approval.el, stats.pending.el),
    h('div', { class: 'whoami' },
      live,
      h('span', { class: 'op' },
        h('span', { class: 'op-name', 'data-testid': 'operator-name' }, op.name || '?'),
        h('span', { class: 'role', 'data-testid': 'operator-role' }, op.role || '')),
      h('button', { type: 'button', class: 'btn ghost small', 'data-testid': 'logout-btn', onclick: logout }, 'Sign out')));
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  fill(root, 
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    header, main);
  return { header, nav, main, stats, pendingBadge, live };
}

async function loadStats() {
  if (!shell) return;
  try {
    const s = await api.stats();
    if (!shell) return;
    const by = (s && s.by_decision) || {};
    const n = (v) => String(Number(v) || 0);
    shell.stats.allow.value.textContent = n(by.ALLOW);
    shell.stats.deny.value.textContent = n(by.DENY);
    shell.stats.approval.value.textContent = n(by.REQUIRE_APPROVAL);
    shell.stats.pending.value.textContent = n(s.pending);
    shell.stats.pending.el.classList.toggle('hot', Number(s.pending) > 0);
    shell.pendingBadge.hidden = !(Number(s.pending) > 0);
    shell.pendingBadge.textContent = n(s.pending);
    document.title = Number(s.pending) > 0 ? `(${n(s.pending)}) SudoMode` : 'SudoMode';
  } catch { /* header counts are best effort */ }
}

// throttled, not debounced: a steady stream of events must not starve it
function scheduleStats() {
  if (statsTimer) return;
  statsTimer = setTimeout(() => { statsTimer = null; loadStats(); }, 500);
}

function setLive(state) {
  if (!shell) return;
  shell.live.className = `live ${state}`;
  shell.live.textContent = { live: 'live', connecting: 'reconnecting', down: 'offline' }[state] || state;
}

function startApp(s) {
  session = s;
  if (s.session_token) setSessionToken(s.session_token);
  shell = buildShell();
  route();
  loadStats();
  stopEvents = subscribe({
    onRequest(req) {
      if (current && current.onRequest) current.onRequest(req);
      scheduleStats();
    },
    onOpen() {
      // events may have been missed before this (re)connect: resync
      if (current && current.onReconnect) current.onReconnect();
      scheduleStats();
    },
    onState: setLive,
  });
}

function showLogin(notice) {
  if (stopEvents) stopEvents();
  stopEvents = null;
  if (current && current.unmount) current.unmount();
  current = null;
  shell = null;
  session = null;
  setSessionToken(null);
  document.title = 'Sign in · SudoMode';
  loginView(root, startApp, notice);
}

async function logout() {
  try { await api.logout(); } catch { /* the session may already have ended */ }
  showLogin('Signed out.');
}

setUnauthorizedHandler(() => {
  if (session) showLogin('Your session has ended. Sign in again.');
});

window.addEventListener('hashchange', () => {
  route();
  if (shell) shell.main.focus({ preventScroll: true });
});

async function boot() {
  startTicker();
  // A reload keeps this tab's session; a new tab signs in again.
  if (!sessionToken()) { showLogin(''); return; }
  try {
    startApp(await api.getSession());
  } catch (e) {
    if (e.status === 401) showLogin('');
    else {
      fill(root, h('main', { class: 'login' }, h('div', { class: 'alert', role: 'alert' },
        `Cannot reach SudoMode: ${e.message}. `, h('a', { href: location.href, onclick: () => location.reload() }, 'Retry'))));
    }
  }
}

boot();
