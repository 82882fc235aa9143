// The page's one way to the /v1 API: the session (an HttpOnly cookie the server sets and this
// script never sees, plus its CSRF token, kept in memory only and asked for again after a
// reload), the X-CSRF-Token and X-Purpose headers, errors in the API's shape, and images as
// blob: URLs fetched through one bounded pool.

const PURPOSE = 'imagelens.purpose';
let csrf = null;

/** An error answered by the API: status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called when the API answers 401 to a signed-in call (expired, revoked or forged token). */
let onSignedOut = () => {};
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export const session = {
  /** The purpose is not a secret: it is kept for the tab. */
  get purpose() {
    return sessionStorage.getItem(PURPOSE) || '';
  },
  set purpose(value) {
    sessionStorage.setItem(PURPOSE, value);
  },
  /** Keeps the CSRF token of a session answer (POST or GET /v1/session). */
  keep(info) {
    csrf = (info && info.csrf) || null;
  },
  clear() {
    csrf = null;
  },
};

/** Header values are ASCII: other characters of the purpose are replaced, not dropped. */
function headerSafe(text) {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
}

function headers(extra, method) {
  const h = new Headers(extra || {});
  if (csrf && !['GET', 'HEAD'].includes(method)) h.set('X-CSRF-Token', csrf);
  const purpose = session.purpose.trim();
  if (purpose) h.set('X-Purpose', headerSafe(purpose));
  return h;
}

async function failure(resp) {
  let code = 'error';
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch {
    // Not JSON (hyper's own 414/431): keep the status line.
  }
  return new ApiError(resp.status, code, message);
}

/**
 * Calls the API. `options.json` is sent as a JSON body; `options.form` as multipart;
 * `options.raw` returns the Response instead of its JSON.
 */
export async function api(path, options = {}) {
  const method = options.method || 'GET';
  const init = { method, headers: headers(options.headers, method), credentials: 'same-origin' };
  if (options.json !== undefined) {
    init.headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(options.json);
  } else if (options.form) {
    init.body = options.form;
  }
  if (options.signal) init.signal = options.signal;
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const err = await failure(resp);
    if (resp.status === 401 && !options.signingIn) {
      session.clear();
      onSignedOut(err);
    }
    throw err;
  }
  if (options.raw) return resp;
  if (resp.status === 204) return null;
  return resp.json();
}

/** A list item as the server reads comma-separated lists: quoted as in CSV when it holds a
 * comma or a quote. */
function listItem(value) {
  const s = String(value);
  return /[",]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The items of a comma-separated list as the server reads them (values holding a comma
 * quoted as in CSV, a quote inside doubled), trimmed, without empty ones. Text that breaks the
 * quoting rules is split at every comma instead. */
export function parseList(text) {
  const items = [];
  let item = '';
  let i = 0;
  const s = String(text || '');
  const skipSpace = () => { while (i < s.length && /\s/.test(s[i])) i += 1; };
  const naive = () => s.split(',').map((v) => v.trim()).filter(Boolean);
  for (;;) {
    skipSpace();
    if (s[i] === '"') {
      i += 1;
      for (;;) {
        if (i >= s.length) return naive();
        if (s[i] === '"' && s[i + 1] === '"') { item += '"'; i += 2; continue; }
        if (s[i] === '"') { i += 1; break; }
        item += s[i]; i += 1;
      }
      skipSpace();
      if (i < s.length && s[i] !== ',') return naive();
    } else {
      while (i < s.length && s[i] !== ',') {
        if (s[i] === '"') return naive();
        item += s[i]; i += 1;
      }
    }
    if (item.trim()) items.push(item.trim());
    item = '';
    if (i >= s.length) return items;
    i += 1; // the comma
  }
}

/** Query string of the non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) {
      continue;
    }
    q.set(k, Array.isArray(v) ? v.map(listItem).join(',') : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Starts a session with these credentials: the server sets the cookie. */
async function startSession(authorization) {
  const info = await api('/v1/session', {
    method: 'POST',
    headers: { Authorization: authorization },
    signingIn: true,
  });
  session.keep(info);
  return info;
}

/** Signs in with a name and password (one-day session). */
export function signIn(name, password) {
  const bytes = new TextEncoder().encode(`${name}:${password}`);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return startSession(`Basic ${btoa(binary)}`);
}

/** Signs in with a pasted token: the session is a token of its own, the pasted one is not kept. */
export function signInWithToken(token) {
  return startSession(`Bearer ${token}`);
}

/** The session the browser already holds (after a reload); throws (401) when there is none. */
export async function resume() {
  const info = await api('/v1/session', { signingIn: true });
  session.keep(info);
  return info;
}

/** Who is signed in; throws (401) when the session does not work. */
export function whoami(signingIn = false) {
  return api('/v1/whoami', { signingIn });
}

/** Signs out: the server revokes the session's token and clears the cookie. */
export async function signOut() {
  try {
    await api('/v1/session', { method: 'DELETE' });
  } finally {
    session.clear();
  }
}

// Image fetches share a small pool so a page of results does not open dozens at once.
const MAX_PARALLEL = 6;
let running = 0;
const waiting = [];

async function slot(work) {
  if (running >= MAX_PARALLEL) await new Promise((resolve) => waiting.push(resolve));
  running += 1;
  try {
    return await work();
  } finally {
    running -= 1;
    const next = waiting.shift();
    if (next) next();
  }
}

/** Fetches an image of the API and returns a blob: URL for it (revoke it when done). */
export function imageUrl(path, signal) {
  return slot(async () => {
    const resp = await api(path, { raw: true, signal });
    return URL.createObjectURL(await resp.blob());
  });
}

/** A JSON read through the same pool (record look-ups beside thumbnails). */
export function pooled(path, signal) {
  return slot(() => api(path, { signal }));
}

/** Downloads a streamed archive answer as a file. */
export async function download(path, options, fallbackName) {
  const resp = await api(path, { ...options, raw: true });
  const disposition = resp.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(disposition);
  const name = m ? m[1] : fallbackName;
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return name;
}
