// On-call schedules on the administration page (/api/oncall/schedules/…): each with who is on
// call now and until when, its rotation in words, and its overrides (someone on call instead
// for a while), which can be added and taken off; a new schedule takes a name, a time zone, an
// optional project and one rotation of people; deleting one asks first.

import { el, byTestId, when, exact } from '/assets/common.js';
import { Feedback, busy } from '/assets/settings-parts.js';
import { rowMessages, rowFeedback, tag, focusAfter, reloadButton } from '/assets/manage-parts.js';

const ROTATION_WORDS = { daily: 'every day', weekly: 'every week' };

/** A rotation as people say it: "every day", "every 12 hours", "every 2 days". */
function rotationWords(r) {
  if (ROTATION_WORDS[r]) return ROTATION_WORDS[r];
  const m = /^(\d+)([dh])$/.exec(r);
  if (!m) return r;
  const n = Number(m[1]);
  const unit = m[2] === 'd' ? 'day' : 'hour';
  return n === 1 ? `every ${unit}` : `every ${n} ${unit}s`;
}

/** A `datetime-local` value as RFC 3339 (in the browser's zone, as the person typed it). */
function instant(value) {
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? null : at.toISOString();
}

/** Now (or `minutes` from now) as a `datetime-local` value. */
function localValue(minutes = 0) {
  const at = new Date(Date.now() + minutes * 60000);
  at.setSeconds(0, 0);
  return new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

export class OnCall {
  constructor(ctx) {
    this.ctx = ctx;
    this.items = [];
    this.form = byTestId('add-schedule-form');
    this.form.addEventListener('submit', (ev) => this.create(ev));
    this.form.elements.start.value = localValue();
    const zones = byTestId('schedule-zones');
    const known = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : ['UTC'];
    zones.replaceChildren(...known.map((z) => el('option', { value: z })));
    this.form.elements.time_zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    reloadButton(byTestId('schedules-reload'), 'schedules', () => this.load(), () => 'The schedules are up to date.');
    ctx.on('people', () => this.renderChoices());
    ctx.on('projects', () => this.renderChoices());
  }

  /** The people and projects the new-schedule form offers. */
  renderChoices() {
    const people = [...this.ctx.people.values()].filter((p) => p.is_active !== false);
    const box = byTestId('schedule-people');
    const ticked = new Set([...box.querySelectorAll('input:checked')].map((c) => c.value));
    box.replaceChildren(box.querySelector('legend'), ...people.map((p) => el('label', { class: 'check' },
      el('input', { type: 'checkbox', name: 'users', value: p.id, testid: 'schedule-person', checked: ticked.has(String(p.id)) }),
      ` ${p.display_name || p.username}`)));
    const project = this.form.elements.project;
    const chosen = project.value;
    project.replaceChildren(el('option', { value: '' }, 'None: every admin and member sees it'),
      ...this.ctx.projects.map((p) => el('option', { value: p.id, selected: String(p.id) === chosen }, `${p.key} · ${p.name}`)));
    for (const s of this.items) this.renderOverrideChoices(s.name);
  }

  async load() {
    const feedback = new Feedback('schedules');
    const { session } = this.ctx;
    try {
      const list = await session.api('GET', '/api/oncall/schedules/');
      this.items = await Promise.all(list.map(async (s) => {
        const path = `/api/oncall/schedules/${encodeURIComponent(s.name)}/`;
        const [now, overrides] = await Promise.all([
          session.api('GET', `${path}now/`).catch(() => null),
          session.api('GET', `${path}overrides/`).catch(() => []),
        ]);
        return { ...s, now, overrides };
      }));
      this.render();
    } catch (e) {
      feedback.fail(e);
    }
  }

  render() {
    byTestId('schedule-list').replaceChildren(...this.items.map((s) => this.row(s)));
    byTestId('schedules-empty').hidden = this.items.length > 0;
    this.renderChoices();
  }

  row(s) {
    const { ctx } = this;
    const key = `schedule-${s.name}`;
    const now = s.now?.user_id
      ? el('p', { class: 'item-facts', testid: 'schedule-now' },
        'On call now: ', el('strong', {}, ctx.nameOf(s.now.user_id)),
        s.now.until ? [' until ', el('time', { datetime: s.now.until, title: exact(s.now.until) }, exact(s.now.until))] : null,
        s.now.source === 'override' ? ' (an override)' : '', '.')
      : el('p', { class: 'item-facts', testid: 'schedule-now' }, 'Nobody is on call now.');
    const layers = s.layers.map((l, i) => el('li', {},
      `${s.layers.length > 1 ? `Layer ${i + 1}: ` : ''}${l.users.map((u) => ctx.nameOf(u)).join(', ')} in turn, ${rotationWords(l.rotation)} at ${l.handoff} (${s.time_zone}), from `,
      when(l.start), '.'));
    const overrides = s.overrides.map((o) => el('li', { class: 'override', testid: 'override', dataset: { id: o.id } },
      `${ctx.nameOf(o.user_id)} from ${exact(o.from)} to ${exact(o.to)} `,
      el('button', {
        type: 'button', class: 'link danger', testid: 'override-delete',
        'aria-label': `Take off the override of ${ctx.nameOf(o.user_id)} from ${exact(o.from)}`,
        onclick: (ev) => this.removeOverride(ev.currentTarget, s, o),
      }, 'Take off')));
    const form = el('form', { class: 'settings-form override-form', testid: 'override-form', novalidate: true },
      el('fieldset', { class: 'plain' },
        el('legend', {}, 'Put someone on call instead, for a while'),
        el('label', {}, 'Who', el('select', { name: 'user', testid: 'override-user', required: true })),
        el('label', {}, 'From', el('input', { type: 'datetime-local', name: 'from', testid: 'override-from', required: true, value: localValue() })),
        el('label', {}, 'To', el('input', { type: 'datetime-local', name: 'to', testid: 'override-to', required: true, value: localValue(8 * 60) }))),
      el('div', { class: 'form-actions' },
        el('button', { type: 'submit', class: 'small', testid: 'override-submit' }, 'Add the override')));
    form.addEventListener('submit', (ev) => this.addOverride(ev, s));
    return el('li', { class: 'manage-item', id: key, testid: 'schedule', dataset: { name: s.name } },
      el('div', { class: 'item-head' },
        el('strong', { class: 'mono' }, s.name), ' ',
        tag(s.project ? ctx.projectName(s.project) : 'Everyone', 'plain', 'schedule-scope')),
      now,
      el('ul', { class: 'item-facts layers' }, ...layers),
      overrides.length ? el('ul', { class: 'overrides', 'aria-label': `Overrides of ${s.name}` }, ...overrides) : null,
      form,
      el('div', { class: 'item-buttons' }, el('button', {
        type: 'button', class: 'small danger', testid: 'schedule-delete', 'aria-label': `Delete the schedule ${s.name}`,
        onclick: (ev) => this.remove(ev.currentTarget, s),
      }, 'Delete…')),
      rowMessages(key));
  }

  renderOverrideChoices(name) {
    const row = document.querySelector(`[data-testid="schedule"][data-name="${CSS.escape(name)}"]`);
    const select = row?.querySelector('[data-testid="override-user"]');
    if (!select) return;
    const chosen = select.value;
    const people = [...this.ctx.people.values()].filter((p) => p.is_active !== false);
    select.replaceChildren(...people.map((p) => el('option', { value: p.id, selected: String(p.id) === chosen }, p.display_name || p.username)));
  }

  async create(ev) {
    ev.preventDefault();
    const f = this.form.elements;
    const feedback = new Feedback('add-schedule', this.form);
    const users = [...this.form.querySelectorAll('[data-testid="schedule-person"]:checked')].map((c) => Number(c.value));
    if (!f.name.value.trim()) return feedback.fail('Give the schedule a name: lowercase letters, digits, - or _.', { input: f.name });
    if (!users.length) return feedback.fail('Choose who takes the shifts.', { input: this.form.querySelector('[data-testid="schedule-person"]') });
    const start = instant(f.start.value);
    if (!start) return feedback.fail('Give the first shift\'s start.', { input: f.start });
    const body = {
      name: f.name.value.trim(),
      time_zone: f.time_zone.value.trim(),
      layers: [{ users, rotation: f.rotation.value, handoff: f.handoff.value, start }],
      ...(f.project.value ? { project: Number(f.project.value) } : {}),
    };
    await busy(byTestId('add-schedule-submit'), async () => {
      try {
        await this.ctx.session.api('POST', '/api/oncall/schedules/', body);
        feedback.ok(`The schedule ${body.name} is made.`);
        f.name.value = '';
        await this.load();
      } catch (e) {
        feedback.fail(e, { fields: { name: f.name, time_zone: f.time_zone, layers: f.rotation } });
      }
    });
  }

  async addOverride(ev, s) {
    ev.preventDefault();
    const form = ev.currentTarget;
    const row = form.closest('[data-testid="schedule"]');
    const feedback = rowFeedback(row);
    const from = instant(form.elements.from.value);
    const to = instant(form.elements.to.value);
    if (!from || !to) return feedback.fail('Give when it starts and ends.', { input: form.elements.from });
    if (to <= from) return feedback.fail('It must end after it starts.', { input: form.elements.to });
    const body = { user_id: Number(form.elements.user.value), from, to };
    const path = `/api/oncall/schedules/${encodeURIComponent(s.name)}/overrides/`;
    await busy(form.querySelector('button[type="submit"]'), async () => {
      try {
        await this.ctx.session.api('POST', path, body);
        await this.load();
        const again = document.querySelector(`[data-testid="schedule"][data-name="${CSS.escape(s.name)}"]`);
        if (again) rowFeedback(again).ok(`${this.ctx.nameOf(body.user_id)} is on call instead from ${exact(from)}.`);
      } catch (e) {
        feedback.fail(e, { fields: { from: form.elements.from, to: form.elements.to, user_id: form.elements.user } });
      }
    });
  }

  async removeOverride(button, s, o) {
    const row = button.closest('[data-testid="schedule"]');
    await busy(button, async () => {
      try {
        await this.ctx.session.api('DELETE', `/api/oncall/schedules/${encodeURIComponent(s.name)}/overrides/${o.id}/`);
        await this.load();
        const again = document.querySelector(`[data-testid="schedule"][data-name="${CSS.escape(s.name)}"]`);
        if (again) {
          rowFeedback(again).ok('The override is taken off.');
          again.querySelector('[data-testid="override-user"]')?.focus();
        }
      } catch (e) {
        rowFeedback(row).fail(e);
      }
    });
  }

  async remove(button, s) {
    const yes = await this.ctx.confirm({
      title: `Delete the schedule ${s.name}?`,
      message: 'Its rotation and overrides go, and pages sent to it find nobody. This cannot be undone.',
      confirm: 'Delete the schedule',
    });
    if (!yes) return;
    const row = button.closest('[data-testid="schedule"]');
    const refocus = focusAfter(row, byTestId('add-schedule-box').querySelector('summary'));
    await busy(button, async () => {
      try {
        await this.ctx.session.api('DELETE', `/api/oncall/schedules/${encodeURIComponent(s.name)}/`);
        refocus();
        this.items = this.items.filter((x) => x.name !== s.name);
        this.render();
        new Feedback('schedules').ok(`The schedule ${s.name} is deleted.`);
      } catch (e) {
        rowFeedback(row).fail(e);
      }
    });
  }
}
