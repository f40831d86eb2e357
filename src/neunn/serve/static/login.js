// The login page: name and password sent as JSON (never a form submit), the server's one-sentence error on a failure,
// and back to the page that sent us here (?next=, a same-site path only) once logged in.
import { safeNext } from "./cases-api.js";

const $ = (selector) => document.querySelector(selector);
const next = safeNext(new URLSearchParams(location.search).get("next"));

function showError(message) {
  const box = $("#login-error");
  box.textContent = message;
  box.hidden = !message;
}

async function logIn(event) {
  event.preventDefault();
  const name = $("#login-name").value.trim();
  const password = $("#login-password").value;
  if (!name || !password) {
    showError("Enter your user name and password.");
    (name ? $("#login-password") : $("#login-name")).focus();
    return;
  }
  const button = $("#login-submit");
  button.disabled = true;
  button.textContent = "Logging in…";
  showError("");
  try {
    const response = await fetch("/api/v1/session", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ name, password }), cache: "no-store",
    });
    if (response.ok) {
      location.replace(next);
      return;
    }
    let message = `Login failed (HTTP ${response.status}).`;
    try { message = (await response.json()).error || message; } catch { /* not JSON: keep the status */ }
    showError(message);
    $("#login-password").select();
  } catch {
    showError("The server cannot be reached; check the connection and try again.");
  }
  button.disabled = false;
  button.textContent = "Log in";
}

$("#login-form").addEventListener("submit", logIn);
if (next !== "/") {
  $("#login-next").textContent = "You will go back to the page you were on.";
  $("#login-next").hidden = false;
}
