// Talking to this server, for every page: one fetch() for the /api/v1 calls (nothing else is ever fetched), with the
// page's credentials — the one-sample page's bearer token, or the case pages' CSRF token (their session is an HttpOnly
// cookie the page never sees) — and the server's {"error": "..."} message. What a 401 does is the page's own.

/** What this page's requests carry: a bearer token (Authorization) and a CSRF token (X-CSRF-Token on changes). */
export const credentials = { token: null, csrf: null };

/** Thrown once the page is on its way to its login page (after a 401): callers just stop. */
export class LoggedOut extends Error {
  constructor() { super("Your session has ended: log in again."); this.name = "LoggedOut"; }
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const hooks = { unauthorized: null, renewCsrf: null };

/** What the page does about a 401 (``unauthorized``, which throws), and how it renews a stale CSRF token
 *  (``renewCsrf``, which answers whether the token changed); without them the answer is returned as it is. */
export function onAuthFailure({ unauthorized = null, renewCsrf = null } = {}) {
  Object.assign(hooks, { unauthorized, renewCsrf });
}

/** fetch() for this server's API: the credentials, JSON bodies (``json``) or form data (``body``), and the page's own
 *  answer to a 401. A 403 about the CSRF token (the session was renewed in another tab) renews it and tries once more. */
export async function api(path, { method = "GET", json, body, headers = {}, retry = true } = {}) {
  const options = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (credentials.token) options.headers.Authorization = `Bearer ${credentials.token}`;
  if (!SAFE.has(method) && credentials.csrf) options.headers["X-CSRF-Token"] = credentials.csrf;
  if (json !== undefined) {
    options.body = JSON.stringify(json);
    options.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    options.body = body;
  }
  const response = await fetch(path, options);
  if (response.status === 401 && hooks.unauthorized) hooks.unauthorized();
  if (response.status === 403 && !SAFE.has(method) && retry && hooks.renewCsrf) {
    const text = await response.clone().text();
    if (text.includes("X-CSRF-Token") && await hooks.renewCsrf()) {
      return api(path, { method, json, body, headers, retry: false });
    }
  }
  return response;
}

/** The body of an answer as JSON, or {error} when it is not JSON. */
export async function bodyOf(response) {
  try { return await response.json(); } catch { return { error: `HTTP ${response.status}` }; }
}

/** The server's one-sentence reason for a refusal ({"error": "..."}), else ``fallback``. */
export async function errorOf(response, fallback = `HTTP ${response.status}`) {
  try { return (await response.json()).error || fallback; } catch { return fallback; }
}
