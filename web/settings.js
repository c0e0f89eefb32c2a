// The settings page at /settings/: a signed-in person's profile (PATCH /api/users/me/), their
// addresses and the codes that verify them (/api/users/me/verify/ and …/send/), how each kind of
// notification reaches them (/api/notifications/preferences/), quiet hours and the digest, the
// devices their pushes go to (/api/devices/), their password (/api/users/me/password/) and
// logging out everywhere (/api/auth/logout-everywhere/). It shares the workspace's login.

import { el, byTestId, ApiError, Session, loginForm, channelName, when, setTimeZone } from '/assets/common.js';
import { Feedback, PreferencesGrid, busy, channelLabel, explain } from '/assets/settings-parts.js';

// The same key as the workspace's and the operator page's: one login for all three.
const session = new Session('tickethub');
const preferences = new PreferencesGrid(session);

const state = {
  me: null,
  // The channels with an address of each person's own, and those this hub sends codes on.
  channels: null,
};

const ROLE_WORDS = { admin: 'Admin', developer: 'Developer', client: 'Client' };

// The seeds' three addresses come first; other channels with an address of one's own fold away.
const MAIN_CHANNELS = ['email', 'whatsapp', 'sms'];

const ADDRESS = {
  email: { label: 'Email', noun: 'email address', type: 'email', autocomplete: 'email' },
  whatsapp: {
    label: 'WhatsApp number', noun: 'WhatsApp number', type: 'tel', autocomplete: 'tel',
    hint: 'In international format, with + and the country code: +15551234567.',
  },
  sms: {
    label: 'Phone number for text messages', noun: 'phone number', type: 'tel', autocomplete: 'tel',
    hint: 'In international format, with + and the country code: +15551234567.',
  },
  voice: {
    label: 'Phone number for calls', noun: 'phone number for calls', type: 'tel', autocomplete: 'tel',
    hint: 'In international format, with + and the country code: +15551234567.',
  },
  slack: {
    label: 'Slack member ID', noun: 'Slack member ID', type: 'text', autocomplete: 'off',
    hint: "Like U0123ABCD. In Slack: your profile's ⋮ menu, Copy member ID.",
  },
  mattermost: {
    label: 'Mattermost user ID', noun: 'Mattermost user ID', type: 'text', autocomplete: 'off',
    hint: '26 lowercase letters and digits, from your Mattermost profile.',
  },
  teams: {
    label: 'Teams webhook address', noun: 'Teams webhook address', type: 'url', autocomplete: 'off',
    hint: 'In Teams: Workflows, “Send webhook alerts to a chat”, then copy its address.',
  },
};

function addressSpec(channel) {
  const name = channelLabel(channel);
  return ADDRESS[channel] || {
    label: `${name} address`, noun: `${name} address`, type: 'text', autocomplete: 'off',
    hint: `Your own ${name} address, as ${name} names you.`,
  };
}

function dateText(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  try {
    return new Intl.DateTimeFormat(undefined, { dateStyle: 'long', timeZone: state.me?.time_zone || undefined }).format(d);
  } catch {
    return d.toLocaleDateString();
  }
}

// Logging in shows the settings; logging out, or a session that ends, the login form.

function showLogin(message = '') {
  byTestId('settings').hidden = true;
  byTestId('whoami').hidden = true;
  byTestId('logout').hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-note').textContent = message;
  byTestId('login-error').textContent = '';
  state.me = null;
  byTestId('login-username').focus();
}

session.onExpired = () => showLogin('Your session has ended. Log in again to change your settings.');

async function start() {
  const me = await session.api('GET', '/api/users/me/');
  byTestId('login').hidden = true;
  byTestId('settings').hidden = false;
  byTestId('logout').hidden = false;
  showMe(me);
  fillProfile();
  fillQuiet();
  await Promise.all([
    showAddresses(),
    preferences.load().catch((e) => preferences.feedback.fail(e)),
    loadDevices(),
  ]);
  const wanted = decodeURIComponent(window.location.hash.slice(1));
  if (wanted) document.getElementById(wanted)?.scrollIntoView();
}

/** Keeps what the hub answered about the caller, and says who is logged in. */
function showMe(me) {
  state.me = { ...state.me, ...me };
  setTimeZone(state.me.time_zone);
  const who = byTestId('whoami');
  who.textContent = `${state.me.display_name || state.me.username} · ${ROLE_WORDS[state.me.role] || state.me.role}`;
  who.title = state.me.username;
  who.hidden = false;
  const zone = byTestId('quiet-zone');
  zone.replaceChildren(
    'Times here are in your time zone, ',
    el('strong', { testid: 'quiet-zone-name' }, state.me.time_zone || 'UTC (none set)'),
    '. ',
    el('a', { href: '#profile' }, 'Change it under Profile'),
    '.');
}

// Profile: the name others see, the time zone and the language of messages.

function zones(current) {
  let list = [];
  try {
    list = Intl.supportedValuesOf('timeZone');
  } catch {
    list = [];
  }
  if (!list.includes('UTC')) list = ['UTC', ...list];
  if (current && !list.includes(current)) list = [current, ...list];
  return list;
}

function fillProfile() {
  const me = state.me;
  byTestId('profile-username').textContent = me.username;
  byTestId('profile-role').textContent = ROLE_WORDS[me.role] || me.role;
  byTestId('profile-joined').replaceChildren(el('time', { datetime: me.date_joined }, dateText(me.date_joined)));
  const form = byTestId('profile-form');
  form.elements.display_name.value = me.display_name || '';
  const select = form.elements.time_zone;
  select.replaceChildren(
    el('option', { value: '' }, 'Not set (UTC)'),
    ...zones(me.time_zone).map((z) => el('option', { value: z }, z.replace(/_/g, ' '))));
  select.value = me.time_zone || '';
  form.elements.locale.value = me.locale || '';
  // For password managers: whose password the password form changes.
  byTestId('password-username').defaultValue = me.username;
}

async function saveProfile(ev) {
  ev.preventDefault();
  const form = ev.target;
  const feedback = new Feedback('profile');
  const fields = { display_name: form.elements.display_name, time_zone: form.elements.time_zone, locale: form.elements.locale };
  const me = state.me;
  const body = {};
  const name = form.elements.display_name.value.trim();
  if (name !== (me.display_name || '')) body.display_name = name;
  const zone = form.elements.time_zone.value || null;
  if (zone !== (me.time_zone ?? null)) body.time_zone = zone;
  const locale = form.elements.locale.value.trim() || null;
  if (locale !== (me.locale ?? null)) body.locale = locale;
  if (locale && !/^[A-Za-z]{2,3}([-_][A-Za-z]{4})?([-_]([A-Za-z]{2}|[0-9]{3}))?$/.test(locale)) {
    feedback.fail('Give the language as a tag such as de, fr or pt-BR, or leave it empty.', { input: fields.locale });
    return;
  }
  if (!Object.keys(body).length) {
    feedback.ok('Nothing to save: your profile is as shown.');
    return;
  }
  try {
    const changed = await busy(byTestId('profile-save'), () => session.api('PATCH', '/api/users/me/', body));
    showMe(changed);
    fillProfile();
    feedback.ok('Profile saved.');
  } catch (e) {
    feedback.fail(e, { fields });
  }
}

// Addresses: one row per channel with its own form, its state, and the code that verifies it.

/**
 * The channels with an address of each person's own, and those this hub can send a code on,
 * as the hub's own API document names them (`GET /api/openapi.json`, narrowed to this hub).
 */
async function addressChannels() {
  if (state.channels) return state.channels;
  let found = null;
  try {
    const res = await fetch('/api/openapi.json', { headers: { Accept: 'application/json' }, credentials: 'omit' });
    const schemas = res.ok ? (await res.json())?.components?.schemas : null;
    const all = schemas?.ProfileChanges?.properties?.addresses?.propertyNames?.enum;
    const coded = schemas?.CodeIn?.properties?.channel?.enum;
    if (Array.isArray(all) && all.length) found = { all, coded: new Set(Array.isArray(coded) ? coded : all) };
  } catch {
    // The three the seeds name, then.
  }
  state.channels = found || { all: [...MAIN_CHANNELS], coded: new Set(MAIN_CHANNELS) };
  return state.channels;
}

function addressRow(channel) {
  const spec = addressSpec(channel);
  const id = `address-${channel}`;
  const described = [`${id}-state`, spec.hint ? `${id}-hint` : null].filter(Boolean).join(' ');
  const input = el('input', {
    id: `${id}-input`, name: 'address', type: spec.type, autocomplete: spec.autocomplete, maxlength: 320,
    spellcheck: 'false', testid: `address-input-${channel}`, 'aria-describedby': described,
  });
  const code = el('input', {
    id: `${id}-code`, name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6,
    testid: `verify-code-${channel}`, 'aria-describedby': `${id}-state`,
  });
  return el('div', { class: 'address', testid: `address-${channel}`, dataset: { channel, state: 'none' } },
    el('form', { class: 'address-form', testid: `address-form-${channel}`, novalidate: true, onsubmit: (ev) => saveAddress(ev, channel) },
      el('label', { for: input.id }, spec.label),
      el('div', { class: 'inline-field' }, input,
        el('button', { type: 'submit', class: 'small', testid: `address-save-${channel}`, 'aria-label': `Save ${spec.noun}` }, 'Save')),
      spec.hint ? el('p', { class: 'muted field-hint', id: `${id}-hint` }, spec.hint) : null),
    el('p', { class: 'address-state', id: `${id}-state`, testid: `address-state-${channel}` }),
    el('form', { class: 'verify-form', testid: `verify-form-${channel}`, novalidate: true, hidden: true, onsubmit: (ev) => verifyCode(ev, channel) },
      el('label', { for: code.id }, `Code sent to your ${spec.noun}`),
      el('div', { class: 'inline-field' }, code,
        el('button', { type: 'submit', class: 'small primary', testid: `verify-submit-${channel}`, 'aria-label': `Verify ${spec.noun}` }, 'Verify'),
        el('button', { type: 'button', class: 'small', testid: `verify-send-${channel}`, 'aria-label': `Send a new code to your ${spec.noun}`, onclick: (ev) => sendCode(ev.currentTarget, channel) }, 'Send a new code'))),
    el('p', { class: 'error', role: 'alert', testid: `address-${channel}-error` }),
    el('p', { class: 'form-status', role: 'status', 'aria-live': 'polite', testid: `address-${channel}-status` }));
}

async function showAddresses() {
  const { all } = await addressChannels();
  const main = all.filter((c) => MAIN_CHANNELS.includes(c));
  const more = all.filter((c) => !MAIN_CHANNELS.includes(c));
  byTestId('address-list').replaceChildren(...main.map(addressRow));
  byTestId('more-address-list').replaceChildren(...more.map(addressRow));
  byTestId('more-addresses').hidden = more.length === 0;
  // An address already set on a folded channel shows unfolded.
  byTestId('more-addresses').open = more.some((c) => state.me.addresses?.[c]);
  for (const c of all) showAddress(c);
}

/** Shows one address as the hub last answered it. */
function showAddress(channel) {
  const row = byTestId(`address-${channel}`);
  if (!row) return;
  const a = state.me.addresses?.[channel];
  const coded = state.channels.coded.has(channel);
  const spec = addressSpec(channel);
  const kind = !a ? 'none' : a.invalid_at ? 'refused' : a.verified_at ? 'verified' : 'unverified';
  row.dataset.state = kind;
  byTestId(`address-input-${channel}`, row).value = a?.address ?? '';
  const line = byTestId(`address-state-${channel}`, row);
  if (kind === 'none') {
    line.replaceChildren(el('span', { class: 'muted' }, 'Not set.'));
  } else if (kind === 'verified') {
    line.replaceChildren(el('span', { class: 'tag-ok' }, el('span', { 'aria-hidden': 'true' }, '✓ '), 'Verified'),
      ` on ${dateText(a.verified_at)}.`);
  } else if (kind === 'refused') {
    line.replaceChildren(el('span', { class: 'tag-bad' }, 'Refused'),
      ` by the provider on ${dateText(a.invalid_at)}: nothing goes to it until you save it again.`);
  } else if (coded) {
    line.replaceChildren(el('span', { class: 'tag-warn' }, 'Not verified'),
      ` yet: enter the six-digit code sent to this ${spec.noun}. Nothing else goes to it until then.`);
  } else {
    line.replaceChildren(el('span', { class: 'tag-warn' }, 'Not verified'),
      ': this hub cannot send a code on this channel, so ask an admin to verify it for you.');
  }
  byTestId(`verify-form-${channel}`, row).hidden = !(kind === 'unverified' && coded);
}

async function saveAddress(ev, channel) {
  ev.preventDefault();
  const row = byTestId(`address-${channel}`);
  const feedback = new Feedback(`address-${channel}`, row);
  const input = byTestId(`address-input-${channel}`, row);
  const spec = addressSpec(channel);
  const value = input.value.trim();
  const current = state.me.addresses?.[channel]?.address ?? '';
  if (value === current) {
    feedback.ok(value ? `Nothing to save: this is your ${spec.noun} already.` : 'Nothing to save.');
    return;
  }
  if (value && spec.type === 'email' && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) {
    feedback.fail('This does not look like an email address. Check it and try again.', { input });
    return;
  }
  try {
    const me = await busy(byTestId(`address-save-${channel}`, row),
      () => session.api('PATCH', '/api/users/me/', { addresses: { [channel]: value || null } }));
    showMe(me);
    showAddress(channel);
    const kind = row.dataset.state;
    if (!value) feedback.ok(`Your ${spec.noun} is removed.`);
    else if (kind === 'unverified' && state.channels.coded.has(channel)) {
      feedback.ok(`Saved. A code is on its way to ${value}: enter it below.`);
      byTestId(`verify-code-${channel}`, row).focus();
    } else feedback.ok('Saved.');
  } catch (e) {
    feedback.fail(e, { input });
  }
}

async function verifyCode(ev, channel) {
  ev.preventDefault();
  const row = byTestId(`address-${channel}`);
  const feedback = new Feedback(`address-${channel}`, row);
  const code = byTestId(`verify-code-${channel}`, row);
  const digits = code.value.replace(/\s+/g, '');
  if (!/^\d{6}$/.test(digits)) {
    feedback.fail('Enter the six digits from the message.', { input: code });
    return;
  }
  try {
    const user = await busy(byTestId(`verify-submit-${channel}`, row),
      () => session.api('POST', '/api/users/me/verify/', { channel, code: digits }));
    code.value = '';
    showMe(user);
    showAddress(channel);
    byTestId(`address-input-${channel}`, row).focus();
    feedback.ok(`Verified. Your notifications go to this ${addressSpec(channel).noun} from now on.`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 400 && /no code is pending/i.test(e.message)) {
      feedback.fail('No code is waiting for this address: it expired or was tried too often. Send a new code.', { input: code });
    } else {
      feedback.fail(e, { input: code });
    }
  }
}

async function sendCode(button, channel) {
  const row = byTestId(`address-${channel}`);
  const feedback = new Feedback(`address-${channel}`, row);
  try {
    await busy(button, () => session.api('POST', '/api/users/me/verify/send/', { channel }));
    feedback.ok(`A new code is on its way to ${state.me.addresses?.[channel]?.address ?? `your ${addressSpec(channel).noun}`}.`);
    byTestId(`verify-code-${channel}`, row).focus();
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      showMe(await session.api('GET', '/api/users/me/'));
      showAddress(channel);
      feedback.ok('This address is verified already.');
    } else {
      feedback.fail(e);
    }
  }
}

// Quiet hours and the digest, in the person's time zone.

function fillQuiet() {
  const me = state.me;
  const form = byTestId('quiet-form');
  form.elements.quiet_on.checked = Boolean(me.quiet_hours);
  if (me.quiet_hours) {
    form.elements.quiet_start.value = me.quiet_hours.start;
    form.elements.quiet_end.value = me.quiet_hours.end;
  }
  form.elements.digest_every.value = me.digest?.every || 'off';
  if (me.digest?.at) form.elements.digest_at.value = me.digest.at;
  quietEnabled();
}

/** The times of what is off cannot be changed. */
function quietEnabled() {
  const form = byTestId('quiet-form');
  const on = form.elements.quiet_on.checked;
  form.elements.quiet_start.disabled = !on;
  form.elements.quiet_end.disabled = !on;
  form.elements.digest_at.disabled = form.elements.digest_every.value === 'off';
}

async function saveQuiet(ev) {
  ev.preventDefault();
  const form = ev.target;
  const feedback = new Feedback('quiet');
  const e = form.elements;
  const on = e.quiet_on.checked;
  const [start, end] = [e.quiet_start.value.slice(0, 5), e.quiet_end.value.slice(0, 5)];
  if (on && !start) return feedback.fail('Give the time quiet hours begin.', { input: e.quiet_start });
  if (on && !end) return feedback.fail('Give the time quiet hours end.', { input: e.quiet_end });
  if (on && start === end) {
    return feedback.fail('Quiet hours begin and end at the same time. Pick two different times, or turn them off.', { input: e.quiet_end });
  }
  const every = e.digest_every.value;
  const at = e.digest_at.value.slice(0, 5);
  if (every !== 'off' && !at) return feedback.fail('Give the time your digest goes.', { input: e.digest_at });
  const body = {
    quiet_hours: on ? { start, end } : null,
    digest: every === 'off' ? null : { every, at },
  };
  try {
    const me = await busy(byTestId('quiet-save'), () => session.api('PATCH', '/api/users/me/', body));
    showMe(me);
    fillQuiet();
    const quiet = me.quiet_hours ? `Quiet hours from ${me.quiet_hours.start} until ${me.quiet_hours.end}` : 'No quiet hours';
    const digest = !me.digest ? 'no digest'
      : me.digest.every === 'hourly' ? `a digest every hour at minute ${me.digest.at.slice(3)}` : `a digest every day at ${me.digest.at}`;
    feedback.ok(`Saved. ${quiet}; ${digest}.`);
  } catch (err) {
    feedback.fail(err, { fields: { quiet_hours: e.quiet_start, digest: e.digest_every } });
  }
  return undefined;
}

// Devices: the browsers and apps pushes go to, each with a button that turns it off.

const DEVICE_KINDS = { webpush: 'Browser', fcm: 'Android app', apns: 'Apple app' };

function deviceName(d) {
  const kind = DEVICE_KINDS[d.kind] || channelName(d.kind);
  return d.push_service ? `${kind} (through ${d.push_service})` : kind;
}

async function loadDevices() {
  const feedback = new Feedback('devices');
  try {
    const devices = await session.api('GET', '/api/devices/');
    showDevices(devices);
  } catch (e) {
    feedback.fail(e);
  }
}

function showDevices(devices) {
  byTestId('device-list').replaceChildren(...devices.map((d) => el('li', { class: 'device', testid: 'device', dataset: { id: d.id, kind: d.kind } },
    el('div', { class: 'device-text' },
      el('strong', { id: `device-${d.id}-name` }, deviceName(d)),
      el('span', { class: 'muted' }, ' · added ', when(d.created_at),
        d.last_used_at ? [' · last push ', when(d.last_used_at)] : ' · no push yet')),
    el('button', {
      type: 'button', class: 'small', testid: 'device-turn-off', 'aria-label': `Turn off ${deviceName(d)}`,
      onclick: (ev) => turnOff(d, ev.currentTarget),
    }, 'Turn off'))));
  byTestId('devices-empty').hidden = devices.length > 0;
}

async function turnOff(device, button) {
  const feedback = new Feedback('devices');
  try {
    await busy(button, () => session.api('DELETE', `/api/devices/${encodeURIComponent(device.id)}/`));
  } catch (e) {
    // Gone already is what was asked for.
    if (!(e instanceof ApiError && e.status === 404)) {
      feedback.fail(e);
      return;
    }
  }
  const item = button.closest('li');
  const next = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  const left = byTestId('device-list').children.length;
  byTestId('devices-empty').hidden = left > 0;
  feedback.ok(`Turned off: ${deviceName(device)} gets no more pushes.`);
  // Keep the keyboard where it was: the next device's button, else the section.
  const target = next?.querySelector('button') || byTestId('devices-section').querySelector('h2');
  if (target.tagName === 'H2') target.setAttribute('tabindex', '-1');
  target.focus();
}

// The password, and every login at once.

async function changePassword(ev) {
  ev.preventDefault();
  const form = ev.target;
  const feedback = new Feedback('password');
  const e = form.elements;
  const [current, fresh, again] = [e.current_password.value, e.new_password.value, e.new_password_again.value];
  if (!current) return feedback.fail('Enter your current password.', { input: e.current_password });
  if ([...fresh].length < 8) return feedback.fail('The new password is too short: use at least 8 characters.', { input: e.new_password });
  if ([...fresh].length > 128) return feedback.fail('The new password is too long: use at most 128 characters.', { input: e.new_password });
  if (fresh !== again) return feedback.fail('The two new passwords differ. Type the same one twice.', { input: e.new_password_again });
  try {
    const tokens = await busy(byTestId('password-save'),
      () => session.api('POST', '/api/users/me/password/', { current_password: current, new_password: fresh }));
    // The change ended every token issued before it: this login goes on with the new pair.
    session.access = tokens.access;
    session.refreshToken = tokens.refresh;
    session.save();
    form.reset();
    feedback.ok('Password changed. Your other devices and browsers are logged out; this one stays logged in.');
  } catch (err) {
    const { field } = explain(err);
    feedback.fail(err, {
      input: field === 'current_password' ? e.current_password : field === 'new_password' ? e.new_password : null,
    });
  }
  return undefined;
}

function askLogoutEverywhere() {
  byTestId('sessions-error').textContent = '';
  byTestId('logout-everywhere-dialog').showModal();
}

async function logoutEverywhere() {
  const button = byTestId('logout-everywhere');
  try {
    await busy(button, () => session.api('POST', '/api/auth/logout-everywhere/'));
  } catch (e) {
    byTestId('sessions-error').textContent = explain(e).text;
    button.focus();
    return;
  }
  // Every token is ended, this tab's too: nothing is left to send back to the hub.
  session.logout(true);
  showLogin('You are logged out everywhere, here too. Log in again to go on.');
}

document.addEventListener('DOMContentLoaded', () => {
  loginForm(session, start);
  byTestId('logout').addEventListener('click', () => {
    session.logout();
    showLogin('You are logged out.');
  });
  byTestId('profile-form').addEventListener('submit', saveProfile);
  const quiet = byTestId('quiet-form');
  quiet.addEventListener('submit', saveQuiet);
  quiet.elements.quiet_on.addEventListener('change', quietEnabled);
  quiet.elements.digest_every.addEventListener('change', quietEnabled);
  byTestId('password-form').addEventListener('submit', changePassword);
  byTestId('logout-everywhere').addEventListener('click', askLogoutEverywhere);
  const dialog = byTestId('logout-everywhere-dialog');
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'confirm') logoutEverywhere();
    else byTestId('logout-everywhere').focus();
    dialog.returnValue = '';
  });
  if (session.loggedIn) {
    start().catch((e) => {
      if (e instanceof ApiError && e.status === 401) showLogin();
      else showLogin(explain(e).text);
    });
  } else {
    showLogin();
  }
});
