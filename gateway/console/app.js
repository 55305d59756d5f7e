// The console's shell: it finds out whether the admin routes are on, asks for the admin
// token (kept in this tab's sessionStorage only), and shows one page at a time by the URL's
// fragment (#/flow, #/consumers, #/projections, #/orders[/<id>], #/analytics). Each page
// module has `mount(root, params)`, which returns a function that stops what it started.

import { probe, token, tryToken } from './api.js';
import { h, fill } from './ui.js';
import * as flow from './flow.js';
import * as consumers from './consumers.js';
import * as projections from './projections.js';
import * as orders from './orders.js';
import * as analytics from './analytics.js';

const PAGES = { flow, consumers, projections, orders, analytics };
const main = document.getElementById('main');
const nav = document.getElementById('nav');
let unmount = () => {};
let state = 'unknown';

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return { name: PAGES[name] ? name : 'flow', params: rest.map(decodeURIComponent) };
}

function show() {
  unmount();
  unmount = () => {};
  if (state === 'disabled') return showDisabled();
  if (state !== 'ok') return showLogin();
  nav.hidden = false;
  const { name, params } = route();
  for (const link of nav.querySelectorAll('a')) {
    link.classList.toggle('active', link.dataset.page === name);
  }
  const root = h('section', { class: 'page', id: `page-${name}` });
  fill(main, root);
  unmount = PAGES[name].mount(root, params) || (() => {});
}

function showDisabled() {
  nav.hidden = true;
  fill(main, h('section', { class: 'page narrow', id: 'disabled' },
    h('h1', {}, 'The operator console is off'),
    h('p', {}, 'The console reads the admin routes, and they are off because this gateway has no admin token.'),
    h('p', {}, 'To turn them on, set ', h('code', {}, 'ORDERFLOW_ADMIN_TOKEN'), ' to a secret and restart it, for example:'),
    h('pre', {}, 'export ORDERFLOW_ADMIN_TOKEN=choose-a-long-secret\nscripts/run'),
    h('p', {}, 'then open this page again and log in with that token.')));
}

function showLogin(message) {
  nav.hidden = true;
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, autofocus: true });
  const error = h('p', { class: 'notice error', id: 'login-error', role: 'alert', hidden: !message }, message || '');
  const form = h('form', { id: 'login', class: 'page narrow' },
    h('h1', {}, 'Log in'),
    h('p', {}, 'The admin token of this gateway (', h('code', {}, 'ORDERFLOW_ADMIN_TOKEN'), '). It is kept in this tab only, until you log out or close it.'),
    h('label', { for: 'token' }, 'Admin token'),
    input,
    h('button', { type: 'submit' }, 'Log in'),
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const candidate = input.value.trim();
    if (!candidate) return;
    if (await tryToken(candidate).catch(() => false)) {
      token.set(candidate);
      state = 'ok';
      if (!location.hash || location.hash === '#/login') location.hash = '#/flow';
      show();
    } else {
      error.hidden = false;
      error.textContent = 'That token does not open the admin routes.';
    }
  });
  fill(main, form);
  input.focus();
}

async function start() {
  try {
    state = await probe();
  } catch (error) {
    fill(main, h('p', { class: 'notice error' }, `The gateway did not answer: ${error.message}`));
    return;
  }
  show();
}

document.getElementById('logout').addEventListener('click', () => {
  token.clear();
  state = 'login';
  show();
});
window.addEventListener('console:logout', () => {
  state = 'login';
  show();
  const error = document.getElementById('login-error');
  if (error) {
    error.hidden = false;
    error.textContent = 'The admin token was refused; log in again.';
  }
});
window.addEventListener('hashchange', () => {
  if (state === 'ok') show();
});
start();
