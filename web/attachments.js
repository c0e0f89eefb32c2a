// A ticket's files in the workspace: listed under the description (pictures as thumbnails
// that open full size), attached with the file picker or by dropping a file on the list,
// deleted by whoever attached them or an admin. Each file's `url` carries a signed value, so
// links and pictures work without the bearer token a page cannot put on them.

import { el, byTestId, ApiError, when } from '/assets/common.js';

/** "812 bytes", "4.2 KB", "3.1 MB". */
export function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * The files part of the ticket view. `deps` gives what the page owns: `session`, `me`,
 * `ask` (a confirmation dialog), `flash` (a message), `describe` (an error in words).
 */
export class Files {
  constructor(deps) {
    this.deps = deps;
    this.ticket = null;
    this.busy = false;
    const form = byTestId('attach-form');
    const input = byTestId('attach-input');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (input.files?.length) this.attach(input.files[0]);
      else this.say('Choose a file first.', 'error');
    });
    input.addEventListener('change', () => {
      if (input.files?.length) this.attach(input.files[0]);
    });
    const zone = byTestId('attachments');
    zone.addEventListener('dragover', (e) => {
      if (!this.open()) return;
      e.preventDefault();
      zone.classList.add('dropping');
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('dropping'));
    zone.addEventListener('drop', (e) => {
      zone.classList.remove('dropping');
      if (!this.open() || !e.dataTransfer?.files?.length) return;
      e.preventDefault();
      this.attach(e.dataTransfer.files[0]);
    });
  }

  /** Whether the ticket on screen takes files from this user. */
  open() {
    const t = this.ticket;
    if (!t || t.status === 'APPROVED') return false;
    const me = this.deps.me();
    return me.role === 'admin' || t.created_by === me.id || (me.role === 'developer' && t.assignees.includes(me.id));
  }

  /** Shows `ticket`'s files (its `attachments`, as the ticket's detail carries them). */
  show(ticket) {
    if (this.ticket?.id !== ticket.id) this.say('');
    this.ticket = ticket;
    this.render();
  }

  render() {
    const t = this.ticket;
    const files = t.attachments || [];
    const list = byTestId('attachment-list');
    list.replaceChildren(...files.map((a) => this.item(a)));
    byTestId('attachments-empty').hidden = files.length > 0;
    byTestId('attach-form').hidden = !this.open();
  }

  item(a) {
    const me = this.deps.me();
    const mine = a.uploaded_by === me.id;
    const meta = el('span', { class: 'muted' }, ` · ${fileSize(a.size)} · ${a.uploaded_by_name} · `, when(a.created_at));
    if (a.deleted) {
      return el('li', { testid: 'attachment-item', dataset: { attachmentId: a.id, deleted: 'true' } },
        el('span', { class: 'muted tombstone' }, `${a.file_name} was deleted.`));
    }
    const link = el('a', {
      href: a.url, testid: 'attachment-link', rel: 'noopener',
      ...(a.inline ? { target: '_blank' } : { download: a.file_name }),
    }, a.file_name);
    const tools = [];
    if (this.open() && (mine || me.role === 'admin')) {
      tools.push(el('button', {
        type: 'button', class: 'link danger', testid: 'attachment-delete',
        'aria-label': `Delete ${a.file_name}`, onclick: () => this.remove(a),
      }, 'Delete'));
    }
    return el('li', { testid: 'attachment-item', dataset: { attachmentId: a.id } },
      a.inline
        ? el('a', { href: a.url, target: '_blank', rel: 'noopener', class: 'thumb', tabindex: '-1', 'aria-hidden': 'true' },
          el('img', { src: a.url, alt: '', loading: 'lazy', testid: 'attachment-thumb' }))
        : null,
      el('span', { class: 'file' }, link, meta),
      tools.length ? el('span', { class: 'comment-tools' }, ' ', ...tools) : null);
  }

  say(text, kind = '') {
    const status = byTestId('attach-status');
    status.textContent = text;
    status.dataset.kind = kind;
  }

  async attach(file) {
    const t = this.ticket;
    if (!t || this.busy) return;
    const form = new FormData();
    form.append('file', file, file.name);
    this.busy = true;
    byTestId('attach-submit').disabled = true;
    this.say(`Attaching ${file.name}…`);
    try {
      const added = await this.deps.session.api('POST', `/api/tickets/${t.id}/attachments/`, form);
      if (this.ticket?.id !== t.id) return;
      // The board's live notice of this very file may have listed it already.
      t.attachments = [...(t.attachments || []).filter((x) => x.id !== added.id), added];
      this.render();
      this.say(`Attached ${added.file_name}.`, 'ok');
      byTestId('attach-input').value = '';
    } catch (e) {
      this.say(`Cannot attach ${file.name}: ${this.reason(e)}`, 'error');
    } finally {
      this.busy = false;
      byTestId('attach-submit').disabled = false;
    }
  }

  /** Why an upload was refused, in people's words. */
  reason(e) {
    if (e instanceof ApiError) {
      if (e.status === 413) return `${e.detail.replace(/^file: /, '')} Attach a smaller file.`;
      if (e.status === 415) return 'files of this type are not taken here.';
      if (e.status === 503) return 'this hub keeps no files.';
      return e.detail.replace(/^file: /, '');
    }
    return this.deps.describe(e);
  }

  async remove(a) {
    const yes = await this.deps.ask({
      title: `Delete ${a.file_name}?`,
      message: 'The file is removed for everyone; the ticket shows that it was deleted.',
      confirm: 'Delete',
      danger: true,
    });
    if (!yes) return;
    try {
      await this.deps.session.api('DELETE', `/api/tickets/${a.ticket}/attachments/${a.id}/`);
      if (this.ticket?.id !== a.ticket) return;
      this.ticket.attachments = this.ticket.attachments.map((x) => (x.id === a.id ? { ...x, deleted: true, url: null } : x));
      this.render();
      this.say(`Deleted ${a.file_name}.`, 'ok');
    } catch (e) {
      this.deps.flash(`Cannot delete ${a.file_name}: ${this.deps.describe(e)}`, 'error');
    }
  }
}
