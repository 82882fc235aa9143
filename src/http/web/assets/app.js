// The page: sign-in, views by role, search with facets and cursor paging, the address bar as
// the search's bookmark.

import {
  api,
  session,
  signIn,
  signInWithToken,
  signOut,
  resume,
  whoami,
  whenSignedOut,
  query,
  parseList,
} from './api.js';
import {
  $, h, me, card, gridKeys, openRecord, initRecordView, recordHooks, collectDialog, exportDialog,
  showCollections, initAuditView, showAudit, applyPermissions,
} from './views.js';

const PAGE = 24;
const AXES = ['captured', 'created', 'annotated', 'ingested'];

/** The search as the page holds it; the address bar mirrors it. */
const state = {
  q: '',
  not: '',
  like: '',
  labels: new Set(),
  noLabels: new Set(),
  datasets: new Set(),
  splits: new Set(),
  attrs: new Set(),
  dates: {},
  filename: '',
  image: null,
  // Take the query literally: no filters are read from its words.
  literal: false,
};

let cursor = null;
let loading = false;
let generation = 0;
let abort = null;
let seen = new Set();
let order = [];
const selection = new Set();
let lastPicked = null;
let hits = new Map();

// ---- Session --------------------------------------------------------------------------------

function show(view) {
  for (const v of ['signin', 'search', 'collections', 'audit']) $(`${v}-view`).hidden = v !== view;
  for (const b of document.querySelectorAll('#tabs button')) {
    b.setAttribute('aria-current', b.dataset.view === view ? 'page' : 'false');
  }
  if (view === 'collections') showCollections();
  if (view === 'audit') showAudit();
}

function banner(text) {
  const b = $('banner');
  b.textContent = text || '';
  b.hidden = !text;
}

function signedOutView(message) {
  me.permissions = new Set();
  $('tabs').hidden = true;
  $('who').hidden = true;
  show('signin');
  if (message) $('signin-error').textContent = message;
  $('signin-name').focus();
}

async function enter() {
  const who = await whoami(true);
  me.account = who.account;
  me.role = who.role;
  me.token = who.token;
  me.permissions = new Set(who.permissions);
  $('who-name').textContent = `${who.account} (${who.role})`;
  $('who').hidden = false;
  $('purpose').value = session.purpose;
  $('tabs').hidden = false;
  $('tab-search').hidden = !me.permissions.has('search');
  $('tab-collections').hidden = !me.permissions.has('collections');
  $('tab-audit').hidden = !(me.permissions.has('lookup') || me.permissions.has('read_audit'));
  applyPermissions(document);
  $('signin-error').textContent = '';
  banner('');
  if (me.permissions.has('search')) {
    show('search');
    fromAddress();
    if (hasSearch()) runSearch();
    else {
      loadFacets();
      $('q').focus();
    }
  } else if (!$('tab-audit').hidden) {
    show('audit');
  } else {
    show('collections');
  }
  const open = new URLSearchParams(location.search).get('open');
  if (open) openRecord(open, null);
}

function initSession() {
  whenSignedOut((err) => signedOutView(`Signed out: ${err.message}. Sign in again.`));
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('signin-error').textContent = '';
    session.purpose = $('signin-purpose').value.trim();
    const button = $('signin-submit');
    button.disabled = true;
    try {
      await signIn($('signin-name').value.trim(), $('signin-password').value);
      $('signin-password').value = '';
      await enter();
    } catch (e) {
      session.clear();
      $('signin-error').textContent = `Cannot sign in: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });
  $('token-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    $('token-input').value = '';
    try {
      await signInWithToken(token);
      await enter();
    } catch (e) {
      session.clear();
      $('signin-error').textContent = `That token does not work: ${e.message}`;
    }
  });
  $('sign-out').addEventListener('click', async () => {
    try {
      await signOut();
    } catch {
      // Revocation failed (already expired): the session is forgotten all the same.
    }
    signedOutView('Signed out.');
  });
  $('purpose').addEventListener('change', () => {
    session.purpose = $('purpose').value.trim();
  });
  for (const b of document.querySelectorAll('#tabs button')) {
    b.addEventListener('click', () => show(b.dataset.view));
  }
}

// ---- Address bar ----------------------------------------------------------------------------

function filterBody() {
  const f = {
    labels: [...state.labels],
    no_labels: [...state.noLabels],
    datasets: [...state.datasets],
    splits: [...state.splits],
    attrs: [...state.attrs],
  };
  for (const axis of AXES) {
    const d = state.dates[axis] || {};
    if (d.after) f[`${axis}_after`] = d.after;
    if (d.before) f[`${axis}_before`] = d.before;
  }
  if (state.filename) f.filename = state.filename;
  return f;
}

function filterQuery() {
  const f = filterBody();
  const p = { label: f.labels, no_label: f.no_labels, dataset: f.datasets, split: f.splits, attr: f.attrs };
  for (const [k, v] of Object.entries(f)) if (!Array.isArray(v)) p[k] = v;
  return p;
}

function toAddress(openId) {
  const p = { q: state.q, not: state.not, like: state.like, ...filterQuery(), open: openId };
  if (state.literal) p.literal = 'true';
  history.replaceState(null, '', `/${query(p)}`);
}

function fromAddress() {
  const p = new URLSearchParams(location.search);
  const list = (k) => new Set(parseList(p.get(k)));
  state.q = p.get('q') || '';
  state.not = p.get('not') || '';
  state.like = p.get('like') || '';
  state.literal = p.get('literal') === 'true';
  state.labels = list('label');
  state.noLabels = list('no_label');
  state.datasets = list('dataset');
  state.splits = list('split');
  state.attrs = list('attr');
  state.filename = p.get('filename') || '';
  state.dates = {};
  for (const axis of AXES) {
    state.dates[axis] = { after: p.get(`${axis}_after`) || '', before: p.get(`${axis}_before`) || '' };
  }
  $('q').value = state.q;
  $('not').value = state.not;
  $('f-filename').value = state.filename;
  likeNote();
}

function hasSearch() {
  return Boolean(state.q || state.like || state.image);
}

// ---- Search ---------------------------------------------------------------------------------

function searchBody(withCursor) {
  const body = {
    query: state.q,
    not: parseList(state.not),
    filter: filterBody(),
    limit: PAGE,
  };
  if (state.like) body.like = state.like;
  if (state.literal) body.literal = true;
  if (withCursor && cursor) body.cursor = cursor;
  return body;
}

function likeNote() {
  const note = $('like-note');
  if (state.like) $('like-text').textContent = `More like record ${state.like}`;
  else if (state.image) $('like-text').textContent = `More like the image ${state.image.name}`;
  note.hidden = !(state.like || state.image);
}

/** Starts a new search: clears the grid and loads the first page and the facets. */
async function runSearch() {
  performance.clearMarks();
  performance.mark('search-start');
  generation += 1;
  if (abort) abort.abort();
  abort = new AbortController();
  cursor = null;
  seen = new Set();
  order = [];
  hits = new Map();
  lastPicked = null;
  $('results').replaceChildren();
  toAddress();
  loadFacets();
  renderInterpreted(null);
  if (!hasSearch()) {
    $('status').textContent = 'Type a query, pick an image, or choose "More like this" on a record.';
    $('more').hidden = true;
    return;
  }
  await loadPage(generation);
}

async function loadPage(gen) {
  if (loading) return;
  loading = true;
  $('status').textContent = cursor ? 'Loading more…' : 'Searching…';
  try {
    const body = searchBody(true);
    let resp;
    if (state.image) {
      // "More like this image": the image goes with every page (cursors are tied to it).
      const form = new FormData();
      form.append('request', new Blob([JSON.stringify(body)], { type: 'application/json' }));
      form.append('image', state.image);
      resp = await api('/v1/search', { method: 'POST', form, signal: abort.signal });
    } else {
      resp = await api('/v1/search', { method: 'POST', json: body, signal: abort.signal });
    }
    if (gen !== generation) return;
    if (!body.cursor) renderInterpreted(resp.interpreted);
    render(resp.results, gen);
    cursor = resp.next_cursor || null;
    $('more').hidden = !cursor;
    const notice = resp.notice ? ` ${resp.notice}` : '';
    $('status').textContent = order.length
      ? `${order.length} result${order.length === 1 ? '' : 's'}${cursor ? ', more below' : ''}.${notice}`
      : `No results.${notice}`;
    document.body.dataset.resultCount = String(order.length);
  } catch (e) {
    if (e.name !== 'AbortError' && gen === generation) $('status').textContent = `Search failed: ${e.message}`;
  } finally {
    loading = false;
  }
}

// ---- What was read from the query ----------------------------------------------------------

/** The words of `f` as a chip names them. */
function chipText(f) {
  switch (f.kind) {
    case 'label': return `with ${f.value}`;
    case 'no_label': return `without ${f.value}`;
    case 'dataset': return `dataset ${f.value}`;
    case 'split': return `split ${f.value}`;
    case 'filename': return `file ${f.value}`;
    default: return `${f.axis || 'captured'} ${(f.after || '').slice(0, 10)}…${(f.before || '').slice(0, 10)}`;
  }
}

/** Makes an interpreted filter an explicit one of the page's filters. */
function adopt(f) {
  if (f.kind === 'label') state.labels.add(f.value);
  else if (f.kind === 'no_label') state.noLabels.add(f.value);
  else if (f.kind === 'dataset') state.datasets.add(f.value);
  else if (f.kind === 'split') state.splits.add(f.value);
  else if (f.kind === 'filename') {
    state.filename = f.value;
    $('f-filename').value = f.value;
  } else if (f.kind === 'date') {
    const axis = f.axis || 'captured';
    state.dates[axis] = { after: (f.after || '').slice(0, 10), before: (f.before || '').slice(0, 10) };
  }
}

/**
 * Shows the filters the server read from the query as chips. Removing one takes the query
 * literally from then on: the other chips become explicit filters and the removed chip's
 * words go back into the ranking text.
 */
function renderInterpreted(interp) {
  const box = $('interpreted');
  box.replaceChildren();
  if (state.literal && state.q) {
    const again = h('button', { type: 'button', text: 'Read filters from the query' });
    again.addEventListener('click', () => {
      state.literal = false;
      runSearch();
    });
    box.append(h('span', { text: 'Your words are taken literally.' }), again);
    box.hidden = false;
    return;
  }
  const filters = (interp && interp.filters) || [];
  box.hidden = filters.length === 0;
  if (!filters.length) return;
  box.append(h('span', { text: 'Read from your query:' }));
  filters.forEach((f, i) => {
    const remove = h('button', { type: 'button', text: '×', 'aria-label': `Remove “${chipText(f)}”: search these words as text` });
    remove.addEventListener('click', () => {
      filters.forEach((g, j) => {
        if (j !== i && !g.overridden) adopt(g);
      });
      state.q = [interp.text, f.words].filter(Boolean).join(' ');
      $('q').value = state.q;
      state.literal = true;
      runSearch();
    });
    const chip = h('span', { class: 'chip', 'data-kind': f.kind, title: `from “${f.words}”${f.overridden ? ' (overridden by your filter)' : ''}` },
      h('span', { text: chipText(f) }), h('span', { class: 'from', text: `“${f.words}”` }), remove);
    box.append(chip);
  });
}

function painted(gen) {
  return () => {
    if (gen !== generation || document.body.dataset.firstPaintGen === String(gen)) return;
    document.body.dataset.firstPaintGen = String(gen);
    performance.mark('first-results');
    const m = performance.measure('first-results-paint', 'search-start', 'first-results');
    document.body.dataset.firstPaintMs = m.duration.toFixed(1);
  };
}

function render(results, gen) {
  const grid = $('results');
  for (const hit of results) {
    if (seen.has(hit.id)) continue;
    seen.add(hit.id);
    hits.set(hit.id, hit);
    const index = order.length;
    order.push(hit.id);
    grid.append(
      card(hit, {
        onOpen: (id, hh) => {
          toAddress(id);
          openRecord(id, hh);
        },
        onLike: likeRecord,
        selection,
        onSelect: pick,
        index,
        signal: abort.signal,
        onPainted: painted(gen),
      }),
    );
  }
}

/** "More like this": a search by the record's own image (the filters stay). */
function likeRecord(id) {
  state.like = id;
  state.image = null;
  state.q = '';
  $('q').value = '';
  likeNote();
  show('search');
  runSearch();
}

/** Click selects one; shift-click selects the range from the last one clicked. */
function pick(id, on, shift, index) {
  if (shift && lastPicked !== null) {
    const [a, b] = [Math.min(lastPicked, index), Math.max(lastPicked, index)];
    for (let i = a; i <= b; i += 1) {
      if (on) selection.add(order[i]);
      else selection.delete(order[i]);
    }
  } else if (on) selection.add(id);
  else selection.delete(id);
  lastPicked = index;
  syncSelection();
}

function syncSelection() {
  for (const box of document.querySelectorAll('#results .card')) {
    box.querySelector('.pick').checked = selection.has(box.dataset.id);
    box.classList.toggle('selected', selection.has(box.dataset.id));
  }
  $('selection-count').textContent = selection.size ? `${selection.size} selected` : '';
}

// ---- Facets ---------------------------------------------------------------------------------

let facetTimer = null;

async function loadFacets() {
  if (!me.permissions.has('search')) return;
  clearTimeout(facetTimer);
  facetTimer = setTimeout(async () => {
    try {
      // With a query, a liked record or an image the counts are over that search's candidate
      // set (its ranking 1,000 deep), read as the search reads it; without, over the filters.
      let f;
      if (state.image) {
        // An image goes up with the search, as the search sends it (GET cannot carry it).
        const body = searchBody(false);
        delete body.limit;
        const form = new FormData();
        form.append('request', new Blob([JSON.stringify(body)], { type: 'application/json' }));
        form.append('image', state.image);
        f = await api('/v1/facets', { method: 'POST', form });
      } else {
        const p = filterQuery();
        if (state.q) p.query = state.q;
        if (state.like) p.like = state.like;
        if ((state.q || state.like) && state.not) p.not = parseList(state.not);
        if (state.q && state.literal) p.literal = 'true';
        f = await api(`/v1/facets${query(p)}`);
      }
      renderFacets(f);
    } catch (e) {
      $('facet-total').textContent = `Facets unavailable: ${e.message}`;
    }
  }, 50);
}

function facetRow(name, count, includeSet, excludeSet, kind) {
  const li = h('li', { 'data-value': name });
  const inc = h('input', { type: 'checkbox', 'aria-label': `Only ${name}`, 'data-kind': kind, 'data-value': name, checked: includeSet.has(name) });
  inc.addEventListener('change', () => {
    if (inc.checked) {
      includeSet.add(name);
      if (excludeSet) excludeSet.delete(name);
    } else includeSet.delete(name);
    runSearch();
  });
  li.append(h('label', { class: 'inc' }, inc, ` ${name} `), h('span', { class: 'count', text: String(count) }));
  if (excludeSet) {
    const exc = h('input', { type: 'checkbox', 'aria-label': `Not ${name}`, 'data-kind': 'no-label', 'data-value': name, checked: excludeSet.has(name) });
    exc.addEventListener('change', () => {
      if (exc.checked) {
        excludeSet.add(name);
        includeSet.delete(name);
      } else excludeSet.delete(name);
      runSearch();
    });
    li.append(h('label', { class: 'exc', title: `exclude ${name}` }, exc, ' not'));
  }
  return li;
}

/** A selector that finds the focused filter control again once the facets are drawn anew
 * (they are replaced when each answer arrives, which would drop a keyboard user's focus). */
function focusKey() {
  const el = document.activeElement;
  if (!el || !$('filters-box').contains(el)) return null;
  const bars = el.closest('.histogram');
  if (bars) return `.histogram[data-axis="${CSS.escape(bars.dataset.axis)}"] button[tabindex="0"]`;
  if (el.dataset.kind) return `input[data-kind="${CSS.escape(el.dataset.kind)}"][data-value="${CSS.escape(el.dataset.value)}"]`;
  const label = el.getAttribute('aria-label');
  return label ? `[aria-label="${CSS.escape(label)}"]` : null;
}

function renderFacets(f) {
  const refocus = focusKey();
  const scope = f.scope && f.scope.depth
    ? ` among the top ${f.scope.depth} for “${f.scope.query || (f.scope.image_sha256 ? 'more like this image' : 'more like this')}”`
    : ' match the filters';
  $('facet-total').textContent = `${f.total} record${f.total === 1 ? '' : 's'}${scope}.`;
  document.body.dataset.facetScope = f.scope && f.scope.depth ? 'query' : 'filters';
  const labels = $('label-list');
  labels.replaceChildren();
  const names = new Set([...Object.keys(f.labels), ...state.labels, ...state.noLabels]);
  for (const name of [...names].sort()) {
    labels.append(facetRow(name, f.labels[name] || 0, state.labels, state.noLabels, 'label'));
  }
  const datasets = $('dataset-list');
  datasets.replaceChildren();
  const ds = new Set([...Object.keys(f.datasets), ...state.datasets]);
  for (const name of [...ds].sort()) datasets.append(facetRow(name, f.datasets[name] || 0, state.datasets, null, 'dataset'));
  // Splits (train, val, ...) only when some record has one, or one is chosen.
  const splitCounts = f.splits || {};
  const sp = new Set([...Object.keys(splitCounts), ...state.splits]);
  const splits = $('split-list');
  splits.replaceChildren();
  for (const name of [...sp].sort()) splits.append(facetRow(name, splitCounts[name] || 0, state.splits, null, 'split'));
  $('f-splits').hidden = sp.size === 0;
  // Attributes of the image or a box (key=value, every one ticked must hold) likewise.
  const attrCounts = f.attrs || {};
  const at = new Set([...Object.keys(attrCounts), ...state.attrs]);
  const attrs = $('attr-list');
  attrs.replaceChildren();
  for (const name of [...at].sort()) attrs.append(facetRow(name, attrCounts[name] || 0, state.attrs, null, 'attr'));
  $('f-attrs').hidden = at.size === 0;
  const dates = $('date-list');
  dates.replaceChildren();
  for (const axis of AXES) {
    const d = state.dates[axis] || (state.dates[axis] = { after: '', before: '' });
    const after = h('input', { type: 'date', value: d.after, 'aria-label': `${axis} from` });
    const before = h('input', { type: 'date', value: d.before, 'aria-label': `${axis} to` });
    const changed = () => {
      d.after = after.value;
      d.before = before.value;
      runSearch();
    };
    after.addEventListener('change', changed);
    before.addEventListener('change', changed);
    const months = (f.months && f.months[axis]) || {};
    dates.append(
      h('div', { class: 'axis' }, h('span', { class: 'axis-name', text: axis }), after, before, histogram(axis, months, d)),
    );
  }
  if (refocus) $('filters-box').querySelector(refocus)?.focus();
}

/** The bins of a date histogram: every month from the first to the last that holds records
 * (empty ones too), or every year when that spans more than 36 months. Each bin has its label,
 * its count and the date range it stands for. */
function dateBins(months) {
  const keys = Object.keys(months).sort();
  if (!keys.length) return [];
  const [y0, m0] = keys[0].split('-').map(Number);
  const [y1, m1] = keys[keys.length - 1].split('-').map(Number);
  const pad = (n) => String(n).padStart(2, '0');
  const bins = [];
  if ((y1 - y0) * 12 + (m1 - m0) + 1 <= 36) {
    for (let y = y0, m = m0; y < y1 || (y === y1 && m <= m1); m === 12 ? ((y += 1), (m = 1)) : (m += 1)) {
      const key = `${y}-${pad(m)}`;
      const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
      bins.push({ key, count: months[key] || 0, after: `${key}-01`, before: `${key}-${pad(last)}` });
    }
  } else {
    for (let y = y0; y <= y1; y += 1) {
      const count = keys.filter((k) => k.startsWith(`${y}-`)).reduce((sum, k) => sum + months[k], 0);
      bins.push({ key: String(y), count, after: `${y}-01-01`, before: `${y}-12-31` });
    }
  }
  return bins;
}

/** A date histogram (per month, or per year over more than 36 months); a bar is a button that
 * sets the range to its month or year (a year's months then show). One bar is in the tab order
 * (the one the range starts in, else the fullest); arrow keys, Home and End move between bars. */
function histogram(axis, months, d) {
  const bins = dateBins(months);
  const wrap = h('div', { class: 'histogram', 'data-axis': axis, role: 'group', 'aria-label': `${axis} per ${bins.length && bins[0].key.length === 4 ? 'year' : 'month'}` });
  if (!bins.length) {
    wrap.append(h('span', { class: 'hint', text: 'no dates' }));
    return wrap;
  }
  const max = Math.max(...bins.map((b) => b.count));
  const bars = bins.map((b) => {
    // The bar's name is text of its own (read by screen readers, hidden on screen), not an
    // attribute: translation tools and 'find in page' see it too.
    const bar = h('button', { type: 'button', class: 'bar', tabindex: '-1', title: `${b.key}: ${b.count}` },
      h('span', { class: 'visually-hidden', text: `${axis} ${b.key}: ${b.count} records` }));
    const fill = h('span', { class: 'fill' });
    // Height as a class step (CSP allows no inline style attribute): 10 steps, none when empty.
    if (b.count) fill.classList.add(`h${Math.max(1, Math.round((b.count / max) * 10))}`);
    bar.append(fill);
    bar.addEventListener('click', () => {
      d.after = b.after;
      d.before = b.before;
      runSearch();
    });
    wrap.append(bar);
    return bar;
  });
  let stop = bins.findIndex((b) => d.after && b.after <= d.after && d.after <= b.before);
  if (stop < 0) stop = bins.reduce((best, b, i) => (b.count > bins[best].count ? i : best), 0);
  bars[stop].tabIndex = 0;
  wrap.addEventListener('keydown', (ev) => {
    const i = bars.indexOf(document.activeElement);
    if (i < 0) return;
    const j = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: bars.length - 1 }[ev.key];
    if (j === undefined) return;
    ev.preventDefault();
    const to = Math.min(bars.length - 1, Math.max(0, j));
    bars[i].tabIndex = -1;
    bars[to].tabIndex = 0;
    bars[to].focus();
  });
  return wrap;
}

// ---- Wiring ---------------------------------------------------------------------------------

function initSearch() {
  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.q = $('q').value.trim();
    // A query typed anew is read for filters again.
    state.literal = false;
    state.not = $('not').value.trim();
    runSearch();
  });
  $('image-file').addEventListener('change', () => {
    const file = $('image-file').files[0];
    state.image = file || null;
    if (file) state.like = '';
    likeNote();
    runSearch();
  });
  $('like-clear').addEventListener('click', () => {
    state.like = '';
    state.image = null;
    $('image-file').value = '';
    likeNote();
    runSearch();
  });
  // Drop an image anywhere on the search view.
  const view = $('search-view');
  view.addEventListener('dragover', (ev) => ev.preventDefault());
  view.addEventListener('drop', (ev) => {
    ev.preventDefault();
    const file = [...(ev.dataTransfer.files || [])].find((f) => f.type.startsWith('image/'));
    if (!file) return;
    state.image = file;
    state.like = '';
    likeNote();
    runSearch();
  });
  $('f-filename').addEventListener('change', () => {
    state.filename = $('f-filename').value.trim();
    runSearch();
  });
  $('clear-filters').addEventListener('click', () => {
    state.labels.clear();
    state.noLabels.clear();
    state.datasets.clear();
    state.splits.clear();
    state.attrs.clear();
    state.dates = {};
    state.filename = '';
    $('f-filename').value = '';
    runSearch();
  });
  $('show-boxes').addEventListener('change', () => {
    document.body.classList.toggle('hide-boxes', !$('show-boxes').checked);
  });
  $('select-page').addEventListener('click', () => {
    for (const id of order) selection.add(id);
    syncSelection();
  });
  $('select-none').addEventListener('click', () => {
    selection.clear();
    syncSelection();
  });
  $('collect').addEventListener('click', async () => {
    if (!selection.size) {
      $('status').textContent = 'Select results first (click the boxes; shift-click for a range).';
      return;
    }
    const c = await collectDialog([...selection]);
    if (c) {
      $('status').textContent = `Collection ${c.name} now has ${c.ids.length} record(s).`;
      selection.clear();
      syncSelection();
    }
  });
  $('export-search').addEventListener('click', () => {
    if (!hasSearch()) {
      $('status').textContent = 'Search first: export takes the current search\'s results.';
      return;
    }
    const body = searchBody(false);
    delete body.limit;
    // An image search's image goes up with the export, as the search sends it.
    exportDialog({ search: body, image: state.image });
  });
  $('more').addEventListener('click', () => loadPage(generation));
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor && !loading) loadPage(generation);
  }, { rootMargin: '200px' });
  observer.observe($('sentinel'));
  gridKeys($('results'));
  gridKeys($('collection-grid'));
  recordHooks({
    like: (record) => likeRecord(record.id),
    collect: async (ids) => {
      const c = await collectDialog(ids);
      if (c) $('record-notice').textContent = `Added to ${c.name}.`;
    },
    closed: () => {
      if (!$('search-view').hidden) toAddress();
    },
  });
}

async function start() {
  initSession();
  initSearch();
  initRecordView();
  initAuditView();
  try {
    await resume();
    await enter();
  } catch (e) {
    session.clear();
    // No session at all is the ordinary first visit; one that stopped working is said so.
    const none = e.status === 401 && e.message.startsWith('authentication required');
    signedOutView(none ? '' : `Your session ended: ${e.message}. Sign in again.`);
  }
}

start();
