// Talking to this server, for every page: one fetch() for the /api/v1 calls (nothing else is ever fetched), with the
// page's credentials — the one-sample page's bearer token, or the case pages' CSRF token (their session is an HttpOnly
// cookie the page never sees) — and the server's {"error": "..."} message. What a 401 does is the page's own.
// When the server cannot be reached (a request fails before any answer), the page's #offline-banner says so until a
// request gets an answer again (a probe retries every few seconds meanwhile).

/** What this page's requests carry: a bearer token (Authorization) and a CSRF token (X-CSRF-Token on changes). */
export const credentials = { token: null, csrf: null };

/** Thrown once the page is on its way to its login page (after a 401): callers just stop. */
export class LoggedOut extends Error {
  constructor() { super("Your session has ended: log in again."); this.name = "LoggedOut"; }
}

/** Thrown when a request got no answer at all (the server is down, or the network): nothing was saved. */
export class Unreachable extends Error {
  constructor() { super("The server cannot be reached: nothing was saved."); this.name = "Unreachable"; }
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const PROBE_EVERY_MS = 5000;
const link = { reachable: true, probe: null };

/** Whether the last request got an answer (any HTTP status): false while the server cannot be reached. */
export const serverReachable = () => link.reachable;

function setReachable(reachable) {
  if (reachable) { clearTimeout(link.probe); link.probe = null; }
  if (link.reachable === reachable) return;
  link.reachable = reachable;
  const banner = document.getElementById("offline-banner");
  if (banner) banner.hidden = reachable;
  document.body?.classList.toggle("offline", !reachable);
  if (!reachable) probeSoon();
}

/** While unreachable: ask the server again now and then (any answer, even a refusal, means it is back). */
function probeSoon() {
  clearTimeout(link.probe);
  link.probe = setTimeout(async () => {
    try {
      await fetch("/api/v1/model", { headers: { Accept: "application/json" }, cache: "no-store" });
      setReachable(true);
    } catch {
      probeSoon();
    }
  }, PROBE_EVERY_MS);
}

window.addEventListener("offline", () => setReachable(false));
window.addEventListener("online", () => { if (!link.reachable) probeSoon(); });
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
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    if (error?.name === "AbortError") throw error;
    setReachable(false);
    throw new Unreachable();
  }
  setReachable(true);
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
