// Tiny DOM builder. Children that are strings become text nodes, so data is
// never parsed as HTML. There is deliberately no innerHTML anywhere.
import { formatElapsed, formatCountdown, formatTimestamp } from './render.js';

/**
 * h('div', {class: 'x', 'data-testid': 'y', onclick: fn}, 'text', node, [more])
 * Attributes: `class`, `text`, `hidden`, `on<event>` (addEventListener),
 * anything else via setAttribute (null/undefined/false skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'hidden') el.hidden = !!v;
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace el's children (null/false children are skipped, strings become text). */
export function fill(el, ...children) {
  return append(clear(el), children);
}

/**
 * Copy each column's header text onto its cells as data-label, so that on a
 * phone the CSS can stack a row into "label: value" lines.
 */
export function labelCells(table) {
  const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent);
  for (const tr of table.querySelectorAll('tbody tr')) {
    [...tr.children].forEach((td, i) => { if (heads[i] && !td.hasAttribute('colspan')) td.dataset.label = heads[i]; });
  }
  table.classList.add('stack');
  return table;
}

/** <time> showing a local timestamp, with the raw ISO value in `datetime` and title. */
export function timeEl(iso, cls) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso, class: cls }, formatTimestamp(iso));
}

/** A span kept up to date by the global ticker: time since `iso`. */
export function elapsedEl(iso, attrs = {}) {
  return h('span', { ...attrs, 'data-since': iso, class: `tick ${attrs.class || ''}` }, formatElapsed(iso));
}

/** A span kept up to date by the global ticker: countdown to `iso`. */
export function countdownEl(iso, attrs = {}) {
  if (!iso) return h('span', { class: 'muted' }, 'no expiry');
  const el = h('span', { ...attrs, 'data-until': iso, class: `tick ${attrs.class || ''}` }, formatCountdown(iso));
  tickOne(el, Date.now());
  return el;
}

function tickOne(el, now) {
  if (el.dataset.since) el.textContent = formatElapsed(el.dataset.since, now);
  if (el.dataset.until) {
    const text = formatCountdown(el.dataset.until, now);
    el.textContent = text;
    const left = Date.parse(el.dataset.until) - now;
    el.classList.toggle('soon', left > 0 && left < 60_000);
    el.classList.toggle('expired', left <= 0);
  }
}

let ticker = null;
/** One interval for every live time on the page. */
export function startTicker() {
  if (ticker) return;
  ticker = setInterval(() => {
    const now = Date.now();
    for (const el of document.querySelectorAll('[data-since],[data-until]')) tickOne(el, now);
  }, 1000);
}
