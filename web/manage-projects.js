// Projects on the administration page: every project with its members; a new project (key and
// name), a new name, and members added or removed (PATCH /api/projects/{id}/ with the whole new
// `member_ids` list: a member taken off loses the project's live board at once).

import { el, byTestId, when } from '/assets/common.js';
import { Feedback, busy } from '/assets/settings-parts.js';
import { ROLE_WORDS, rowMessages, rowFeedback, tag } from '/assets/manage-parts.js';

const KEY = /^[A-Z][A-Z0-9]{1,9}$/;

export class Projects {
  constructor(ctx) {
    this.ctx = ctx;
    this.list = byTestId('project-list');
    const form = byTestId('add-project-form');
    form.addEventListener('submit', (ev) => this.create(ev));
    form.elements.key.addEventListener('input', (ev) => {
      const input = ev.target;
      const at = input.selectionStart;
      input.value = input.value.toUpperCase();
      input.setSelectionRange(at, at);
    });
    ctx.on('people', () => this.render());
    // An approved join request made someone a member.
    ctx.on('members', () => this.load());
  }

  async load() {
    const feedback = new Feedback('projects');
    try {
      this.ctx.projects = await this.ctx.session.all('/api/projects/');
      this.render();
      this.ctx.emit('projects');
    } catch (e) {
      feedback.fail(e);
    }
  }

  render() {
    this.list.replaceChildren(...this.ctx.projects.map((p) => this.row(p)));
    byTestId('projects-empty').hidden = this.ctx.projects.length > 0;
  }

  /** The people who may be added: active, not an API key's user, not a member yet. */
  candidates(p) {
    return [...this.ctx.people.values()]
      .filter((u) => u.is_active && !/^key:/.test(u.username) && !p.member_ids.includes(u.id))
      .sort((a, b) => (a.display_name || a.username).localeCompare(b.display_name || b.username));
  }

  row(p) {
    const key = `project-${p.id}`;
    const name = el('input', {
      id: `${key}-name`, name: 'name', value: p.name, maxlength: 200, required: true, autocomplete: 'off', testid: 'project-name-input',
    });
    const people = this.candidates(p);
    const pick = el('select', { id: `${key}-add`, name: 'member', testid: 'project-member-select', disabled: people.length === 0 },
      people.length
        ? people.map((u) => el('option', { value: u.id }, `${u.display_name || u.username} (${ROLE_WORDS[u.role] || u.role})`))
        : el('option', { value: '' }, 'Everyone is a member already'));
    const members = p.member_ids.map((id) => {
      const u = this.ctx.people.get(id);
      const who = this.ctx.nameOf(id);
      return el('li', { testid: 'project-member', dataset: { id, username: u?.username ?? '' } },
        el('span', { class: 'member-name' }, who, u && who !== u.username ? el('span', { class: 'muted' }, ` (${u.username})`) : null,
          u ? [' ', tag(ROLE_WORDS[u.role] || u.role)] : null, u && !u.is_active ? [' ', tag('Deactivated', 'bad')] : null),
        el('button', {
          type: 'button', class: 'small', testid: 'member-remove', 'aria-label': `Remove ${who} from ${p.key}`,
          onclick: (ev) => this.remove(ev.currentTarget, p, id),
        }, 'Remove'));
    });
    const count = p.member_ids.length;
    return el('li', { class: 'manage-item', testid: 'project', dataset: { id: p.id, key: p.key } },
      el('div', { class: 'item-head' },
        el('strong', { class: 'mono', testid: 'project-key' }, p.key), ' ', el('span', { testid: 'project-name' }, p.name)),
      el('p', { class: 'muted item-facts' }, `${count === 1 ? '1 member' : `${count} members`} · created `, when(p.created_at)),
      el('form', { class: 'inline-form', novalidate: true, onsubmit: (ev) => this.rename(ev, p) },
        el('label', { for: name.id }, 'Name', el('span', { class: 'sr-only' }, ` of ${p.key}`)),
        el('div', { class: 'inline-field' }, name,
          el('button', { type: 'submit', class: 'small', testid: 'project-rename', 'aria-label': `Rename ${p.key}` }, 'Rename'))),
      el('h3', { class: 'list-heading', id: `${key}-members` }, 'Members'),
      members.length
        ? el('ul', { class: 'member-list', 'aria-labelledby': `${key}-members` }, members)
        : el('p', { class: 'muted' }, 'No members yet: only admins see it.'),
      el('form', { class: 'inline-form', novalidate: true, onsubmit: (ev) => this.add(ev, p) },
        el('label', { for: pick.id }, `Add a member to ${p.key}`),
        el('div', { class: 'inline-field' }, pick,
          el('button', { type: 'submit', class: 'small', testid: 'member-add', 'aria-label': `Add to ${p.key}`, disabled: people.length === 0 }, 'Add'))),
      rowMessages(key));
  }

  /** Sends a change; draws the project again, says `text(after)` and puts the keyboard on `focus`. */
  async change(p, body, button, focus, text) {
    const row = button.closest('[data-testid="project"]');
    try {
      const after = await busy(button, () => this.ctx.session.api('PATCH', `/api/projects/${p.id}/`, body));
      this.ctx.projects = this.ctx.projects.map((x) => (x.id === after.id ? after : x));
      const fresh = this.row(after);
      row.replaceWith(fresh);
      rowFeedback(fresh).ok(text(after));
      (fresh.querySelector(focus) || fresh.querySelector('[data-testid="project-member-select"]'))?.focus();
      this.ctx.emit('projects');
    } catch (e) {
      rowFeedback(row).fail(e, { input: body.name !== undefined ? row.querySelector('[data-testid="project-name-input"]') : null });
    }
  }

  rename(ev, p) {
    ev.preventDefault();
    const row = ev.target.closest('[data-testid="project"]');
    const input = row.querySelector('[data-testid="project-name-input"]');
    const name = input.value.trim();
    if (!name) return rowFeedback(row).fail('Give the project a name.', { input });
    if (name === p.name) return rowFeedback(row).ok(`Nothing to save: ${p.key} is called ${p.name} already.`);
    return this.change(p, { name }, ev.submitter || row.querySelector('[data-testid="project-rename"]'),
      '[data-testid="project-name-input"]', (after) => `Renamed: ${after.key} is ${after.name} now.`);
  }

  add(ev, p) {
    ev.preventDefault();
    const row = ev.target.closest('[data-testid="project"]');
    const id = Number(row.querySelector('[data-testid="project-member-select"]').value);
    if (!id) return undefined;
    return this.change(p, { member_ids: [...p.member_ids, id] }, ev.submitter || row.querySelector('[data-testid="member-add"]'),
      '[data-testid="project-member-select"]', (after) => `${this.ctx.nameOf(id)} is a member of ${after.key} now.`);
  }

  remove(button, p, id) {
    const item = button.closest('li');
    const next = item.nextElementSibling || item.previousElementSibling;
    const focus = next ? `[data-testid="project-member"][data-id="${next.dataset.id}"] [data-testid="member-remove"]` : '[data-testid="project-member-select"]';
    return this.change(p, { member_ids: p.member_ids.filter((m) => m !== id) }, button, focus,
      (after) => `${this.ctx.nameOf(id)} is no longer a member of ${after.key}.`);
  }

  async create(ev) {
    ev.preventDefault();
    const form = ev.target;
    const f = form.elements;
    const feedback = new Feedback('add-project');
    const key = f.key.value.trim().toUpperCase();
    const name = f.name.value.trim();
    if (!KEY.test(key)) {
      return feedback.fail('A key is 2 to 10 capital letters or digits and starts with a letter, such as WEB or APP2.', { input: f.key });
    }
    if (!name) return feedback.fail('Give the project a name.', { input: f.name });
    try {
      const made = await busy(byTestId('add-project-submit'), () => this.ctx.session.api('POST', '/api/projects/', { key, name, member_ids: [] }));
      form.reset();
      this.ctx.projects = [...this.ctx.projects, made];
      this.render();
      this.ctx.emit('projects');
      feedback.ok(`Created ${made.key} · ${made.name}. Add its members below.`);
    } catch (e) {
      feedback.fail(e, { fields: { key: f.key, name: f.name } });
    }
    return undefined;
  }
}
