// The case pages' session: who is logged in (an HttpOnly cookie the page never sees) with its CSRF token (kept in
// memory only, in core-api.js's credentials), renewing that token, logging out, and the way to the login page and back.
// The requests themselves are core-api.js's.
import { api, credentials, errorOf, LoggedOut, onAuthFailure } from "./core-api.js";

export const session = { user: null, role: null, expiresAt: null };

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

/** A new CSRF token after the server refused the one in memory (the session was renewed in another tab): whether it
 *  changed. */
async function renewCsrf() {
  const before = credentials.csrf;
  await loadSession();
  return credentials.csrf !== before;
}

/** Who is logged in (and the session's CSRF token); goes to the login page when nobody is, and so on any later 401. */
export async function loadSession() {
  onAuthFailure({ unauthorized: toLogin, renewCsrf });
  const response = await api("/api/v1/session");
  if (!response.ok) throw new Error(await errorOf(response));
  const body = await response.json();
  Object.assign(session, { user: body.user, role: body.role, expiresAt: body.expires_at });
  credentials.csrf = body.csrf_token;
  return session;
}

/** Ends the session on the server too, then shows the login page. */
export async function logout() {
  try { await api("/api/v1/session", { method: "DELETE" }); } catch (error) { if (error instanceof LoggedOut) return; }
  leaving = true;
  location.replace("/login");
}
