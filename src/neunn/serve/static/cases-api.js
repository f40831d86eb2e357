// Talking to this server for the case pages: the session (an HttpOnly cookie the page never sees) and its CSRF token
// (kept in memory only), the /api/v1 calls, and the way back to the login page. Nothing else is ever fetched.

export const session = { user: null, role: null, csrf: null, expiresAt: null };

/** Thrown after a 401 once the page is on its way to the login page: callers just stop. */
export class LoggedOut extends Error {
  constructor() { super("Your session has ended: log in again."); this.name = "LoggedOut"; }
}

/** A same-site path to go to after logging in, or "/" when `next` is missing or points anywhere else. */
export function safeNext(next) {
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
  try {
    const url = new URL(next, location.origin);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname === "/login") return "/";
    return url.pathname + url.search + url.hash;
  } catch {
    return "/";
  }
}

/** The login page's address that comes back here (this page, its case and view) once logged in. */
export function loginUrl(next = location.pathname + location.search + location.hash) {
  const back = safeNext(next);
  return back === "/" ? "/login" : `/login?next=${encodeURIComponent(back)}`;
}

let leaving = false;
export function toLogin() {
  if (!leaving) { leaving = true; location.replace(loginUrl()); }
  throw new LoggedOut();
}

/** Who is logged in (and the session's CSRF token); goes to the login page when nobody is. */
export async function loadSession() {
  const response = await fetch("/api/v1/session", { headers: { Accept: "application/json" }, cache: "no-store" });
  if (response.status === 401) toLogin();
  if (!response.ok) throw new Error(await errorOf(response));
  const body = await response.json();
  Object.assign(session, { user: body.user, role: body.role, csrf: body.csrf_token, expiresAt: body.expires_at });
  return session;
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** fetch() for this server's API: the CSRF header on every change, JSON bodies, the login page on a 401. A 403 about
 *  the CSRF token (the session was renewed in another tab) re-reads the session and tries once more. */
export async function api(path, { method = "GET", json, body, headers = {}, retry = true } = {}) {
  const options = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (json !== undefined) {
    options.body = JSON.stringify(json);
    options.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    options.body = body;
  }
  if (!SAFE.has(method) && session.csrf) options.headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, options);
  if (response.status === 401) toLogin();
  if (response.status === 403 && !SAFE.has(method) && retry) {
    const text = await response.clone().text();
    if (text.includes("X-CSRF-Token")) {
      const before = session.csrf;
      await loadSession();
      if (session.csrf !== before) return api(path, { method, json, body, headers, retry: false });
    }
  }
  return response;
}

/** The body of an answer as JSON, or {error} when it is not JSON. */
export async function bodyOf(response) {
  try { return await response.json(); } catch { return { error: `HTTP ${response.status}` }; }
}

export async function errorOf(response) {
  return (await bodyOf(response)).error || `HTTP ${response.status}`;
}

/** Ends the session on the server too, then shows the login page. */
export async function logout() {
  try { await api("/api/v1/session", { method: "DELETE" }); } catch (error) { if (error instanceof LoggedOut) return; }
  leaving = true;
  location.replace("/login");
}
