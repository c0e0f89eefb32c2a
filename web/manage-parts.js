// What the administration page's sections share: roles in words, the answer lines of a list's
// row, copying a secret that is shown once, and where the keyboard goes when a row is removed.

import { el } from '/assets/common.js';
import { Feedback, busy } from '/assets/settings-parts.js';

export const ROLE_WORDS = { client: 'Client', developer: 'Developer', admin: 'Admin' };

/** A role as people say it, lower case inside a sentence: "a developer", "an admin". */
export function aRole(role) {
  const word = (ROLE_WORDS[role] || String(role ?? '')).toLowerCase();
  return `${/^[aeiou]/.test(word) ? 'an' : 'a'} ${word}`;
}

/** The options of a role `<select>`, `current` chosen. */
export function roleOptions(current) {
  return Object.entries(ROLE_WORDS).map(([value, label]) => el('option', { value, selected: value === current }, label));
}

/**
 * The answer lines of one row of a list: an error (role="alert") and a status (a polite live
 * region), found by `rowFeedback`. `key` makes the error's id unique on the page.
 */
export function rowMessages(key) {
  return el('div', { class: 'item-messages' },
    el('p', { class: 'error', role: 'alert', id: `${key}-error`, testid: 'row-error' }),
    el('p', { class: 'form-status', role: 'status', 'aria-live': 'polite', testid: 'row-status' }));
}

/** The `Feedback` of a row built with `rowMessages`. */
export function rowFeedback(row) {
  return new Feedback('row', row);
}

/**
 * Wires a section's "Reload the list" button: `load()` (which reports its own failure in the
 * `<prefix>-error` line), then `say()` in the section's status line.
 */
export function reloadButton(button, prefix, load, say) {
  button.addEventListener('click', async () => {
    const feedback = new Feedback(prefix);
    feedback.clear();
    await busy(button, load);
    if (!feedback.error.textContent) feedback.ok(say());
  });
}

/** A small tag beside a name: `kind` is ok, warn, bad or plain. */
export function tag(text, kind = 'plain', testid = undefined) {
  return el('span', { class: `item-tag item-tag-${kind}`, testid }, text);
}

/**
 * Copies the value of `input` (a read-only field holding a link or a key) and says so in
 * `status`. Where the browser refuses the clipboard, the text is selected for the person to
 * copy themselves.
 */
export async function copyField(input, status) {
  const text = input.value;
  let done = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      done = true;
    }
  } catch {
    done = false;
  }
  if (!done) {
    input.focus();
    input.select();
    try {
      done = document.execCommand('copy');
    } catch {
      done = false;
    }
  }
  status.textContent = done
    ? 'Copied. Paste it where it goes.'
    : 'This browser did not let the page copy it: it is selected, so press Ctrl+C (or ⌘C) to copy it.';
  return done;
}

/**
 * Moves the keyboard to a sensible place once `row` leaves its list: the first button of the
 * next row (else of the one before), else `fallback`. Call it before removing the row.
 */
export function focusAfter(row, fallback) {
  const near = row.nextElementSibling || row.previousElementSibling;
  return () => {
    const target = near?.isConnected ? near.querySelector('button, select, input') : null;
    (target || fallback)?.focus();
  };
}

