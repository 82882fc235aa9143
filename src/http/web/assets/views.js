// Result cards, the record view, the collection and export dialogs, the collections view and
// the auditor's view. Everything shown comes from the API as this account sees it.

import { api, imageUrl, pooled, query, download } from './api.js';
import { overlay } from './boxes.js';

/** Permissions of the signed-in account (set by app.js after sign-in). */
export const me = { account: '', role: '', permissions: new Set(), token: null };

export const $ = (id) => document.getElementById(id);

/** A new element with text and attributes (never HTML). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function fmtDate(iso) {
  if (!iso) return '—';
  return iso.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC');
}

/** One line saying why a hit ranked where it did. */
export function whyText(hit) {
  const w = hit.why || {};
  const parts = [];
  if (w.matched_labels && w.matched_labels.length) parts.push(`labels: ${w.matched_labels.join(', ')}`);
  if (w.matched_caption_words && w.matched_caption_words.length) {
    parts.push(`caption words: ${w.matched_caption_words.join(', ')}`);
  }
  const sides = [];
  for (const side of ['keyword', 'image', 'region', 'text']) {
    if (w[side]) sides.push(`${side} #${w[side].rank}`);
  }
  if (sides.length) parts.push(`ranked ${sides.join(', ')}`);
  const boxes = (hit.boxes || []).map((b) => (b.similarity !== undefined ? `${b.label} (${b.similarity.toFixed(2)})` : b.label));
  if (boxes.length) parts.push(`boxes: ${boxes.join(', ')}`);
  if (w.matched_negatives && w.matched_negatives.length) parts.push(`pushed down by: ${w.matched_negatives.join(', ')}`);
  return parts.join(' · ') || 'matched by its filters';
}

function altText(record) {
  const labels = record.labels && record.labels.length ? record.labels.join(', ') : 'no labels';
  const caption = record.captions && record.captions.length ? `: ${record.captions[0]}` : '';
  return `${record.filename} (${labels})${caption}`;
}

/**
 * A result card: thumbnail (redacted as the API serves it), every box, score and "why". `hit`
 * is a search hit (it carries the size, captions and boxes), or `{id}` for a collection member
 * (whose record is read for them). `onOpen(id, hit)` opens the record; `onLike(id)`, when
 * given, adds a "More like this" button; `selection` (a Set) is toggled by the checkbox when
 * given.
 */
export function card(hit, { onOpen, onLike, selection, onSelect, index, signal, onPainted }) {
  const whyId = `why-${hit.id}-${index}`;
  const frame = h('span', { class: 'frame' });
  const img = h('img', { alt: hit.filename ? `${hit.filename} (${(hit.labels || []).join(', ')})` : 'record image', decoding: 'async' });
  frame.append(img);
  const open = h(
    'button',
    {
      type: 'button',
      class: 'open',
      'data-id': hit.id,
      'aria-describedby': hit.why ? whyId : undefined,
    },
    frame,
  );
  const li = h('li', { class: 'card', 'data-id': hit.id, 'data-index': index }, open);
  const caption = h('div', { class: 'meta' });
  if (hit.score !== undefined) caption.append(h('span', { class: 'score', text: `score ${hit.score.toFixed(4)}` }));
  caption.append(h('span', { class: 'name', text: hit.filename || hit.id }));
  li.append(caption);
  if (onLike) {
    // "More like this" straight from the grid (the record view has it too).
    const like = h('button', { type: 'button', class: 'like', text: 'More like this', 'aria-label': `More like ${hit.filename || hit.id}` });
    like.addEventListener('click', () => onLike(hit.id));
    li.append(like);
  }
  if (hit.why) li.append(h('div', { class: 'why', id: whyId, role: 'tooltip', text: whyText(hit) }));
  if (selection) {
    const box = h('input', {
      type: 'checkbox',
      class: 'pick',
      'aria-label': `Select ${hit.filename || hit.id}`,
      checked: selection.has(hit.id),
    });
    box.addEventListener('click', (ev) => onSelect(hit.id, box.checked, ev.shiftKey, index));
    li.append(box);
  }
  open.addEventListener('click', () => onOpen(hit.id, hit));
  imageUrl(`/v1/records/${encodeURIComponent(hit.id)}/thumbnail?size=256`, signal)
    .then((url) => {
      img.addEventListener('load', () => onPainted && onPainted(li), { once: true });
      img.src = url;
    })
    .catch((e) => {
      if (e.name !== 'AbortError') li.classList.add('failed');
      img.alt = `image unavailable: ${e.message}`;
    });
  const matched = new Set((hit.boxes || []).map((b) => b.index));
  if (hit.all_boxes && hit.width && hit.height) {
    // A search hit carries the alt text's labels and captions and every box: no record read.
    img.alt = altText(hit);
    frame.append(overlay(hit.width, hit.height, hit.all_boxes, matched));
    return li;
  }
  // A collection member is only an id: the record gives the alt text and every box.
  pooled(`/v1/records/${encodeURIComponent(hit.id)}`, signal)
    .then((record) => {
      img.alt = altText(record);
      if (!hit.filename) caption.querySelector('.name').textContent = record.filename;
      frame.append(overlay(record.width, record.height, record.boxes || [], matched));
    })
    .catch(() => {});
  return li;
}

/** Moves focus between cards with the arrow keys, Home and End (Enter or Space opens; Tab reaches the card's checkbox, which Space ticks). */
export function gridKeys(grid) {
  grid.addEventListener('keydown', (ev) => {
    const keys = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 'down', ArrowUp: 'up', Home: 'home', End: 'end' };
    if (!(ev.key in keys) || !ev.target.classList.contains('open')) return;
    const cards = [...grid.querySelectorAll('.card .open')];
    const at = cards.indexOf(ev.target);
    if (at < 0) return;
    const first = cards[0].getBoundingClientRect().top;
    const perRow = Math.max(1, cards.filter((c) => c.getBoundingClientRect().top === first).length);
    let to = at;
    const k = keys[ev.key];
    if (k === 'down') to = at + perRow;
    else if (k === 'up') to = at - perRow;
    else if (k === 'home') to = 0;
    else if (k === 'end') to = cards.length - 1;
    else to = at + k;
    if (to >= 0 && to < cards.length) {
      ev.preventDefault();
      cards[to].focus();
    }
  });
}

// ---- Record view ---------------------------------------------------------------------------

let recordUrl = null;
let current = null;
const hooks = { like: () => {}, collect: () => {}, closed: () => {} };

/** Sets what the record view's buttons do. */
export function recordHooks(h2) {
  Object.assign(hooks, h2);
}

/** `key=value` per attribute (a value that is not a string as its JSON text). */
function attributeText(attributes) {
  return Object.entries(attributes || {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
}

/** What a box carries beyond its label and place: crowd flag, annotator, attributes, outline. */
function boxDetails(b) {
  const parts = attributeText(b.attributes);
  if (b.iscrowd) parts.unshift('crowd');
  if (b.annotator) parts.push(`by ${b.annotator}`);
  const points = (b.polygons || []).reduce((n, p) => n + p.length, 0);
  if (points) parts.push(`outline of ${points} points`);
  return parts.join(', ');
}

function fact(dl, term, value) {
  if (value === undefined || value === null || value === '' || (Array.isArray(value) && !value.length)) return;
  dl.append(h('dt', { text: term }), h('dd', { text: Array.isArray(value) ? value.join(', ') : String(value) }));
}

async function showImage(record, matched, unredacted) {
  const frame = $('record-frame');
  const img = h('img', { alt: altText(record) });
  const path = `/v1/records/${encodeURIComponent(record.id)}/image${unredacted ? '?unredacted=true' : ''}`;
  const url = await imageUrl(path);
  if (recordUrl) URL.revokeObjectURL(recordUrl);
  recordUrl = url;
  img.src = url;
  frame.replaceChildren(img, overlay(record.width, record.height, record.boxes || [], matched));
}

/** Opens the record view of `id`; `hit` (a search hit) says which boxes matched. */
export async function openRecord(id, hit) {
  const dialog = $('record-dialog');
  $('record-title').textContent = 'Loading…';
  $('record-notice').hidden = true;
  $('record-frame').replaceChildren();
  $('record-facts').replaceChildren();
  $('record-boxes').tBodies[0].replaceChildren();
  $('record-captions').replaceChildren();
  if (!dialog.open) dialog.showModal();
  try {
    const record = await api(`/v1/records/${encodeURIComponent(id)}`);
    current = { record, hit };
    $('record-title').textContent = record.filename;
    const matched = new Set(((hit && hit.boxes) || []).map((b) => b.index));
    const dl = $('record-facts');
    fact(dl, 'Record id', record.id);
    fact(dl, 'Dataset', record.dataset);
    fact(dl, 'Path', record.path);
    fact(dl, 'Images folder', record.images_root);
    fact(dl, 'Size', `${record.width} × ${record.height} px, ${record.bytes} bytes`);
    fact(dl, 'sha256', record.sha256);
    fact(dl, 'Labels', record.labels);
    fact(dl, 'Supercategories', record.supercategories);
    for (const axis of ['captured', 'created', 'modified', 'annotated', 'ingested']) {
      fact(dl, `Date ${axis}`, record.dates && record.dates[axis] ? fmtDate(record.dates[axis]) : null);
    }
    fact(dl, 'Split', record.split);
    fact(dl, 'Source id', record.source_id);
    fact(dl, 'Not present', (record.negative_labels || []).map((l) => `not ${l}`));
    fact(dl, 'Image attributes', attributeText(record.attributes));
    const privacy = record.privacy || {};
    if (privacy.orientation && privacy.orientation !== 1) {
      fact(dl, 'EXIF orientation', `${privacy.orientation} (boxes are in the pixels as displayed)`);
    }
    fact(dl, 'Unplaced annotations', (privacy.uncertain || []).map(
      (u) => `${u.item}: ${u.reason}${u.labels && u.labels.length ? ` (${u.labels.join(', ')})` : ''}`,
    ).join('; '));
    fact(dl, 'Annotators', record.annotators);
    fact(dl, 'Exports (where it came from)', record.exports);
    for (const [k, v] of Object.entries(record.metadata || {})) {
      fact(dl, `Metadata ${k}`, typeof v === 'string' ? v : JSON.stringify(v));
    }
    if (hit && hit.why) fact(dl, 'Why it matched', whyText(hit));
    const body = $('record-boxes').tBodies[0];
    (record.boxes || []).forEach((b, i) => {
      const row = h(
        'tr',
        { class: matched.has(i) ? 'matched' : '' },
        h('td', { text: String(i) }),
        h('td', { text: matched.has(i) ? `${b.label} (matched)` : b.label }),
        h('td', { text: b.supercategory || '' }),
        h('td', { text: [b.x, b.y, b.w, b.h].map((n) => Math.round(n)).join(', ') }),
        h('td', { text: String(Math.round(b.area)) }),
        h('td', { text: boxDetails(b) }),
      );
      body.append(row);
    });
    for (const c of record.captions || []) $('record-captions').append(h('li', { text: c }));
    await showImage(record, matched, false);
  } catch (e) {
    $('record-title').textContent = 'Cannot show this record';
    notice(e.message);
  }
}

function notice(text) {
  const p = $('record-notice');
  p.textContent = text;
  p.hidden = false;
}

export function initRecordView() {
  const dialog = $('record-dialog');
  $('record-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    if (recordUrl) URL.revokeObjectURL(recordUrl);
    recordUrl = null;
    $('record-frame').replaceChildren();
    hooks.closed();
  });
  $('record-like').addEventListener('click', () => {
    if (!current) return;
    dialog.close();
    hooks.like(current.record);
  });
  $('record-collect').addEventListener('click', () => current && hooks.collect([current.record.id]));
  $('record-original').addEventListener('click', async () => {
    if (!current) return;
    notice('Viewing the original is recorded in the audit trail, with your account and purpose.');
    try {
      const matched = new Set(((current.hit && current.hit.boxes) || []).map((b) => b.index));
      await showImage(current.record, matched, true);
      notice('Showing the original image. This view is recorded in the audit trail (unredacted).');
    } catch (e) {
      notice(`The original was refused: ${e.message}`);
    }
  });
}

// ---- Collections ---------------------------------------------------------------------------

/** Asks which collection to add `ids` to, then adds them (or creates the collection). */
export async function collectDialog(ids) {
  const dialog = $('collect-dialog');
  $('collect-what').textContent = `${ids.length} record${ids.length === 1 ? '' : 's'}`;
  $('collect-error').textContent = '';
  const select = $('collect-existing');
  select.replaceChildren(h('option', { value: '', text: '— new collection —' }));
  try {
    const list = await api('/v1/collections');
    for (const c of list.collections) select.append(h('option', { value: c.name, text: `${c.name} (${c.count})` }));
  } catch (e) {
    $('collect-error').textContent = e.message;
  }
  dialog.showModal();
  return new Promise((resolve) => {
    const form = $('collect-form');
    let finished = false;
    const done = (value) => {
      if (finished) return;
      finished = true;
      form.removeEventListener('submit', submit);
      $('collect-cancel').removeEventListener('click', cancel);
      dialog.removeEventListener('close', closed);
      resolve(value);
    };
    // Esc closes the dialog without an answer.
    const closed = () => done(null);
    const cancel = () => {
      dialog.close();
      done(null);
    };
    const submit = async (ev) => {
      ev.preventDefault();
      const existing = select.value;
      const name = existing || $('collect-name').value.trim();
      if (!name) {
        $('collect-error').textContent = 'Choose a collection or give a new name.';
        return;
      }
      try {
        const c = existing
          ? await api(`/v1/collections/${encodeURIComponent(name)}`, { method: 'PATCH', json: { add: ids } })
          : await api('/v1/collections', {
              method: 'POST',
              json: { name, description: $('collect-description').value.trim() || null, ids },
            });
        dialog.close();
        done(c);
      } catch (e) {
        $('collect-error').textContent = e.message;
      }
    };
    form.addEventListener('submit', submit);
    $('collect-cancel').addEventListener('click', cancel);
    dialog.addEventListener('close', closed);
  });
}

/**
 * Asks for a format and archive, then downloads. `target` is `{collection}` or
 * `{search}` (a search body).
 */
export function exportDialog(target) {
  const dialog = $('export-dialog');
  $('export-error').textContent = '';
  $('export-what').textContent = target.collection
    ? `Collection ${target.collection}`
    : target.image ? `The current search (more like the image ${target.image.name})` : 'The current search';
  $('export-max-label').hidden = !target.search;
  dialog.showModal();
  const form = $('export-form');
  const cancel = () => {
    dialog.close();
    cleanup();
  };
  const submit = async (ev) => {
    ev.preventDefault();
    const format = $('export-format').value;
    const archive = $('export-archive').value;
    $('export-ok').disabled = true;
    $('export-error').textContent = 'Preparing the archive…';
    try {
      if (target.collection) {
        await download(
          `/v1/collections/${encodeURIComponent(target.collection)}/export${query({ format, archive })}`,
          {},
          `${target.collection}-${format}.${archive}`,
        );
      } else {
        const max = Math.min(10000, Math.max(1, Number($('export-max').value) || 100));
        const request = { search: target.search, max_results: max, format, archive };
        let options = { method: 'POST', json: request };
        if (target.image) {
          // A search by an uploaded image: the request and the image as multipart.
          const form = new FormData();
          form.append('request', new Blob([JSON.stringify(request)], { type: 'application/json' }));
          form.append('image', target.image);
          options = { method: 'POST', form };
        }
        await download('/v1/export', options, `search-${format}.${archive}`);
      }
      dialog.close();
      cleanup();
    } catch (e) {
      $('export-error').textContent = e.message;
    } finally {
      $('export-ok').disabled = false;
    }
  };
  function cleanup() {
    form.removeEventListener('submit', submit);
    $('export-cancel').removeEventListener('click', cancel);
    dialog.removeEventListener('close', cleanup);
  }
  form.addEventListener('submit', submit);
  $('export-cancel').addEventListener('click', cancel);
  dialog.addEventListener('close', cleanup);
}

let collectionAbort = null;

/** Lists the collections with their actions. */
export async function showCollections() {
  const body = $('collections-table').tBodies[0];
  const status = $('collections-status');
  status.textContent = 'Loading…';
  try {
    const { collections } = await api('/v1/collections');
    body.replaceChildren();
    for (const c of collections) {
      const actions = h('td', { class: 'actions' });
      const open = h('button', { type: 'button', text: 'Show', 'aria-label': `Show ${c.name}` });
      open.addEventListener('click', () => showCollection(c.name));
      const rename = h('button', { type: 'button', text: 'Rename', 'aria-label': `Rename ${c.name}` });
      rename.addEventListener('click', () => renameCollection(c.name, rename));
      const exp = h('button', { type: 'button', text: 'Export…', class: 'needs-export', 'aria-label': `Export ${c.name}` });
      exp.addEventListener('click', () => exportDialog({ collection: c.name }));
      const del = h('button', { type: 'button', text: 'Delete', 'aria-label': `Delete ${c.name}` });
      del.addEventListener('click', async () => {
        if (!window.confirm(`Delete the collection ${c.name}? Its records stay in the library.`)) return;
        try {
          await api(`/v1/collections/${encodeURIComponent(c.name)}`, { method: 'DELETE' });
          showCollections();
        } catch (e) {
          status.textContent = e.message;
        }
      });
      actions.append(open, rename, exp, del);
      body.append(
        h(
          'tr',
          { 'data-name': c.name },
          h('th', { scope: 'row', text: c.name }),
          h('td', { text: c.description || '' }),
          h('td', { text: String(c.count) }),
          h('td', { text: fmtDate(c.updated) }),
          actions,
        ),
      );
    }
    status.textContent = collections.length ? `${collections.length} collection(s)` : 'No collections yet.';
    applyPermissions(document);
  } catch (e) {
    status.textContent = e.message;
  }
}

/**
 * Renames in one audited call (`PATCH` with the new name): the records, description and source
 * stay; a taken or invalid name is refused and the collection keeps its old name.
 */
function renameCollection(name, button) {
  const cell = button.parentElement;
  const input = h('input', { type: 'text', value: name, 'aria-label': `New name for ${name}` });
  const ok = h('button', { type: 'button', text: 'Save' });
  cell.replaceChildren(input, ok);
  input.focus();
  ok.addEventListener('click', async () => {
    const to = input.value.trim();
    if (!to || to === name) return showCollections();
    try {
      await api(`/v1/collections/${encodeURIComponent(name)}`, { method: 'PATCH', json: { name: to } });
      showCollections();
    } catch (e) {
      $('collections-status').textContent = e.message;
    }
  });
}

async function showCollection(name) {
  if (collectionAbort) collectionAbort.abort();
  collectionAbort = new AbortController();
  const grid = $('collection-grid');
  grid.replaceChildren();
  const title = $('collection-shown-title');
  title.hidden = false;
  try {
    const c = await api(`/v1/collections/${encodeURIComponent(name)}`);
    title.textContent = `${c.name}: ${c.ids.length} record(s)`;
    c.ids.forEach((id, i) => {
      grid.append(card({ id }, { onOpen: openRecord, index: i, signal: collectionAbort.signal }));
    });
  } catch (e) {
    title.textContent = e.message;
  }
}

// ---- Auditor's view ------------------------------------------------------------------------

let lookupCursor = null;

function lookupParams() {
  const axis = $('lk-axis').value;
  const p = {
    filename: $('lk-filename').value.trim(),
    filename_prefix: $('lk-prefix').value.trim(),
    source_id: $('lk-source').value.trim(),
    sort: axis,
    desc: $('lk-desc').checked ? 'true' : '',
    limit: 50,
  };
  if ($('lk-after').value) p[`${axis}_after`] = $('lk-after').value;
  if ($('lk-before').value) p[`${axis}_before`] = $('lk-before').value;
  return p;
}

async function lookup(more) {
  const status = $('lookup-status');
  const body = $('lookup-table').tBodies[0];
  if (!more) {
    body.replaceChildren();
    lookupCursor = null;
  }
  status.textContent = 'Looking up…';
  try {
    const p = lookupParams();
    if (more && lookupCursor) p.cursor = lookupCursor;
    const resp = await api(`/v1/lookup${query(p)}`);
    const axis = $('lk-axis').value;
    for (const r of resp.results) {
      const open = h('button', { type: 'button', text: 'Open', 'aria-label': `Open ${r.filename}` });
      open.addEventListener('click', () => openRecord(r.id));
      body.append(
        h(
          'tr',
          { 'data-id': r.id },
          h('td', { text: r.path }),
          h('td', { text: r.dataset }),
          h('td', { text: fmtDate(r.dates && r.dates[axis]) }),
          h('td', { text: (r.labels || []).join(', ') }),
          h('td', {}, open),
        ),
      );
    }
    lookupCursor = resp.next_cursor || null;
    $('lookup-more').hidden = !lookupCursor;
    status.textContent = `${resp.total} record(s) match; ${body.rows.length} shown.`;
  } catch (e) {
    status.textContent = e.message;
  }
}

async function trail() {
  const status = $('trail-status');
  const body = $('trail-table').tBodies[0];
  status.textContent = 'Reading the trail…';
  const p = {
    record: $('tr-record').value.trim(),
    actor: $('tr-actor').value.trim(),
    action: $('tr-action').value.trim(),
    after: $('tr-after').value ? `${$('tr-after').value}T00:00:00Z` : '',
    before: $('tr-before').value ? `${$('tr-before').value}T00:00:00Z` : '',
    limit: 1000,
    newest_first: true,
  };
  try {
    const { entries } = await api(`/v1/audit${query(p)}`);
    body.replaceChildren();
    for (const e of entries) {
      body.append(
        h(
          'tr',
          { 'data-action': e.action },
          h('td', { text: String(e.seq) }),
          h('td', { text: fmtDate(e.time) }),
          h('td', { text: e.role ? `${e.actor} (${e.role})` : e.actor }),
          h('td', { text: e.action }),
          h('td', { text: e.outcome }),
          h('td', { text: e.purpose || '' }),
          h('td', { text: String(e.records.length) }),
          h('td', { text: e.unredacted ? 'yes' : '' }),
        ),
      );
    }
    status.textContent = `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} (newest first, at most 1000).`;
  } catch (e) {
    status.textContent = e.message;
  }
}

async function verify() {
  const status = $('verify-status');
  status.textContent = 'Verifying…';
  try {
    const r = await api('/v1/audit/verify');
    status.className = r.ok ? 'ok' : 'error';
    status.textContent = r.ok
      ? `Verified: ${r.entries} entries, hash chain intact${r.head ? `, head ${r.head.slice(0, 16)}…` : ''}.`
      : `Does not verify after ${r.entries} entries: ${r.problem}`;
  } catch (e) {
    status.textContent = e.message;
  }
}

export function initAuditView() {
  $('lookup-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    lookup(false);
  });
  $('lookup-more').addEventListener('click', () => lookup(true));
  $('trail-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    trail();
  });
  $('verify').addEventListener('click', verify);
}

export function showAudit() {
  if (me.permissions.has('read_audit')) {
    verify();
    trail();
  }
}

/** Hides controls the account's role does not allow (the API refuses them anyway). */
export function applyPermissions(root) {
  const needs = {
    'needs-search': 'search',
    'needs-collections': 'collections',
    'needs-export': 'export',
    'needs-unredacted': 'view_unredacted',
    'needs-lookup': 'lookup',
    'needs-audit': 'read_audit',
  };
  for (const [cls, perm] of Object.entries(needs)) {
    for (const node of root.querySelectorAll(`.${cls}`)) node.hidden = !me.permissions.has(perm);
  }
}
