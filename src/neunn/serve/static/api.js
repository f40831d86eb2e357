// Talking to this server: the access token and the /api/v1 calls (nothing else is ever fetched).
import { $, state } from "./state.js";

export function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("neunn-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname); // keep the token out of the address bar and history
  }
  state.token = sessionStorage.getItem("neunn-token");
}

export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("#token-form").hidden = false;
    $("#token-input").focus();
    throw new Error("This server needs an access token: enter it above.");
  }
  return response;
}

export async function errorOf(response) {
  try { return (await response.json()).error || `HTTP ${response.status}`; } catch { return `HTTP ${response.status}`; }
}

