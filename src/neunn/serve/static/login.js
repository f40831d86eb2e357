// The login page: name and password sent as JSON (never a form submit), the server's one-sentence error on a failure,
// and back to the page that sent us here (?next=, a same-site path only) once logged in.
import { safeNext } from "./cases-api.js";
import { api, errorOf } from "./core-api.js";
import { $ } from "./core-format.js";

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
    const response = await api("/api/v1/session", { method: "POST", json: { name, password } });
    if (response.ok) {
      location.replace(next);
      return;
    }
    showError(await errorOf(response, `Login failed (HTTP ${response.status}).`));
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
