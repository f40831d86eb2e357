// The account dialog of the case pages: change your own password (PUT /api/v1/session/password: the current one is
// checked, your other logins end, this one goes on) and, for an admin, the users (accounts.py): each one's role,
// disable or re-enable, reset a password to a temporary one, add a user. Every change is the server's answer shown.
import { session } from "./cases-api.js";
import { api, bodyOf, LoggedOut } from "./core-api.js";
import { $, when } from "./core-format.js";

const ROLES = ["technologist", "pathologist", "admin"];  // neunn/cases/schema.py ROLES

function say(element, text, ok) {
  element.textContent = text || "";
  element.hidden = !text;
  element.classList.toggle("error-text", !ok);
  element.classList.toggle("ok-text", Boolean(ok));
}

/** One request of the dialog: the body on success, else the reason shown in ``where`` (and null). */
async function ask(where, path, options, done) {
  try {
    const response = await api(path, options);
    const body = await bodyOf(response);
    if (!response.ok) { say(where, body.error || `HTTP ${response.status}`, false); return null; }
    if (done) say(where, done, true);
    return body;
  } catch (error) {
    if (!(error instanceof LoggedOut)) say(where, error.message, false);
    return null;
  }
}

async function changePassword(event) {
  event.preventDefault();
  const message = $("#password-message");
  const current = $("#password-current").value, fresh = $("#password-new").value;
  if (fresh !== $("#password-repeat").value) { say(message, "The two new passwords differ.", false); return; }
  $("#password-save").disabled = true;
  const done = await ask(message, "/api/v1/session/password",
                         { method: "PUT", json: { current_password: current, new_password: fresh } },
                         "Password changed. Your other logins have ended; this one goes on.");
  $("#password-save").disabled = false;
  if (done) $("#password-form").reset();
}

// ---- an admin's users ----------------------------------------------------------------------------------------------
function userRow(user) {
  const tr = document.createElement("tr");
  tr.dataset.testid = "user-row";
  tr.dataset.name = user.name;
  tr.dataset.active = String(user.active);
  const td = (content, className) => {
    const cell = document.createElement("td");
    if (className) cell.className = className;
    cell.append(content);
    return cell;
  };
  const role = document.createElement("select");
  role.className = "user-role";
  role.setAttribute("aria-label", `Role of ${user.name}`);
  ROLES.forEach((r) => role.append(new Option(r, r)));
  role.value = user.role;
  role.addEventListener("change", () => changeUser(user.name, { role: role.value }, `${user.name} is now ${role.value}.`));
  const toggle = Object.assign(document.createElement("button"), {
    type: "button", className: "secondary small-button user-active",
    textContent: user.active ? "Disable" : "Re-enable" });
  toggle.addEventListener("click", () => changeUser(user.name, { active: !user.active },
                                                    `${user.name} is ${user.active ? "disabled" : "enabled again"}.`));
  const you = user.name === session.user ? " (you)" : "";
  tr.append(td(`${user.name}${you}`), td(role), td(user.active ? "active" : "disabled", "user-state"),
            td(when(user.created_at), "muted"), td(toggle));
  return tr;
}

async function loadUsers() {
  const body = await ask($("#users-message"), "/api/v1/users", {});
  if (!body) return;
  $("#users-table tbody").replaceChildren(...body.users.map(userRow));
  const chosen = $("#reset-name").value;
  $("#reset-name").replaceChildren(...body.users.map((u) => new Option(u.name, u.name)));
  if (body.users.some((u) => u.name === chosen)) $("#reset-name").value = chosen;
}

async function changeUser(name, change, done) {
  await ask($("#users-message"), `/api/v1/users/${encodeURIComponent(name)}`, { method: "PATCH", json: change }, done);
  await loadUsers();  // the table shows the server's state, refused change or not
}

async function resetPassword(event) {
  event.preventDefault();
  const name = $("#reset-name").value;
  if (!name) return;
  const body = await ask($("#users-message"), `/api/v1/users/${encodeURIComponent(name)}/password`,
                         { method: "PUT", json: { password: $("#reset-password").value } },
                         `The password of ${name} was reset; give it to them in person. Their logins have ended.`);
  if (body) $("#reset-password").value = "";
}

async function addUser(event) {
  event.preventDefault();
  const name = $("#new-user-name").value.trim();
  const body = await ask($("#users-message"), "/api/v1/users", {
    method: "POST", json: { name, role: $("#new-user-role").value, password: $("#new-user-password").value } },
                         `${name} was added.`);
  if (!body) return;
  $("#new-user-form").reset();
  await loadUsers();
}

function openAccount() {
  $("#account-who").textContent = `· ${session.user} (${session.role})`;
  for (const id of ["#password-message", "#users-message"]) say($(id), "", true);
  const admin = session.role === "admin";
  $("#users-panel").hidden = !admin;
  $("#account-dialog").showModal();
  $("#password-current").focus();
  if (admin) loadUsers();
}

export function wireAccount() {
  $("#account-open").addEventListener("click", openAccount);
  $("#account-close").addEventListener("click", () => $("#account-dialog").close());
  $("#account-dialog").addEventListener("close", () => {
    $("#password-form").reset();
    $("#account-open").focus();
  });
  $("#password-form").addEventListener("submit", changePassword);
  $("#reset-form").addEventListener("submit", resetPassword);
  $("#new-user-form").addEventListener("submit", addUser);
}
