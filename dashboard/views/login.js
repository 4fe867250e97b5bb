// Login with an operator token.
import { h, fill } from '../dom.js';
import { api } from '../api.js';

export function loginView(root, onSession, notice) {
  const token = h('input', {
    id: 'login-token', type: 'password', name: 'token', required: true, autocomplete: 'current-password',
    spellcheck: 'false', 'data-testid': 'login-token',
  });
  const submit = h('button', { type: 'submit', class: 'btn primary', 'data-testid': 'login-submit' }, 'Sign in');
  const msg = h('p', { class: notice ? 'login-msg info' : 'login-msg', role: 'alert', 'aria-live': 'assertive' }, notice || '');
  const form = h('form', { class: 'login-form', 'aria-labelledby': 'login-title' },
    h('div', { class: 'brand big' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '#'), ' SudoMode'),
    h('h1', { id: 'login-title' }, 'Operator sign-in'),
    h('label', { for: 'login-token' }, 'Operator token'),
    token,
    h('p', { class: 'muted small' }, 'Use your operator token, or ', h('code', null, 'SUDOMODE_ADMIN_TOKEN'),
      '. Without operators, ', h('code', null, 'sudomode run'), ' prints one and keeps it in the store directory as ',
      h('code', null, 'admin-token'), '.'),
    submit, msg);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = token.value.trim();
    if (!value) { msg.textContent = 'Enter your operator token.'; token.focus(); return; }
    submit.disabled = true;
    msg.textContent = '';
    msg.className = 'login-msg';
    try {
      const session = await api.login(value);
      token.value = '';
      onSession(session);
    } catch (e) {
      msg.textContent = e.status === 401 ? 'That token was not accepted.' : `Sign-in failed: ${e.message}`;
      submit.disabled = false;
      token.select();
    }
  });

  fill(root, h('main', { class: 'login' }, form));
  token.focus();
}
