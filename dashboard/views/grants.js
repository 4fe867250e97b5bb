// Standing grants (SPEC §6.1): active and past, who made each, its uses,
// and Revoke for operators who may decide.
import { h, fill, timeEl, countdownEl, labelCells } from '../dom.js';
import { api } from '../api.js';
import { canDecide, errorBox, visible } from './widgets.js';

function usesText(g) {
  return g.max_uses ? `${g.uses} of ${g.max_uses}` : `${g.uses} (no limit)`;
}

function state(g) {
  if (g.revoked_at) return 'revoked';
  if (g.active) return 'active';
  if (g.max_uses && g.uses >= g.max_uses) return 'used up';
  return 'expired';
}

export function grantsView(root, ctx) {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const msg = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  fill(root, h('div', { class: 'view-head' }, h('h1', null, 'Standing grants'),
    h('p', { class: 'muted' }, 'Calls an operator allowed again for a while, instead of approving each one.')), msg, body);

  function row(g) {
    const s = state(g);
    const revoke = g.active && canDecide(ctx)
      ? h('button', {
        type: 'button', class: 'btn reject small', 'data-testid': 'revoke-btn',
        onclick: async (ev) => {
          ev.target.disabled = true;
          try { await api.revokeGrant(g.id); load(); } catch (e) { ev.target.disabled = false; fill(msg, errorBox(e, 'Could not revoke')); msg.classList.add('show'); }
        },
      }, 'Revoke') : null;
    return h('tr', { 'data-testid': 'grant-row', 'data-grant-id': g.id, 'data-state': s },
      h('td', null, visible(g.agent || '')),
      h('td', null, h('span', { class: 'resource' }, visible(g.resource || '')), ' · ', h('span', { class: 'action' }, visible(g.action || '')),
        g.condition ? h('div', { class: 'small' }, 'if ', h('code', { class: 'cond' }, g.condition)) : null),
      h('td', { 'data-testid': 'grant-uses' }, usesText(g)),
      h('td', null, g.active ? countdownEl(g.expires_at) : timeEl(g.revoked_at || g.expires_at)),
      h('td', null, h('span', { class: `badge grant-${s.replace(' ', '-')}`, 'data-testid': 'grant-state' }, s),
        g.revoked_by ? h('div', { class: 'small muted' }, `by ${g.revoked_by}`) : null),
      h('td', null, g.created_by || '?', ' ', timeEl(g.created_at, 'muted small'),
        g.from_request ? h('div', { class: 'small' }, h('a', { href: `#/requests/${encodeURIComponent(g.from_request)}` }, 'from this request')) : null,
        g.reason ? h('div', { class: 'small muted' }, g.reason) : null),
      h('td', null, revoke));
  }

  function table(title, grants, testid) {
    return h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, `${title} (${grants.length})`)),
      grants.length === 0 ? h('p', { class: 'muted' }, title === 'Active' ? 'No grant is active.' : 'None yet.')
        : h('div', { class: 'table-scroll' }, labelCells(h('table', { class: 'table grants', 'data-testid': testid },
          h('thead', null, h('tr', null, ['Agent', 'Intent', 'Uses', 'Ends', 'State', 'Made by', '']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, grants.map(row))))));
  }

  async function load() {
    try {
      const data = await api.grants();
      const all = (data && data.grants) || [];
      fill(body, table('Active', all.filter((g) => g.active), 'grants-active'),
        table('Past', all.filter((g) => !g.active), 'grants-past'));
    } catch (e) {
      fill(body, errorBox(e, 'Could not load grants'));
    }
  }
  load();
  return { onReconnect: load, onRequest: (req) => { if (req.grant_id) load(); } };
}
