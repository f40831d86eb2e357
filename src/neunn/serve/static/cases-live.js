// Reviewers see each other: the open case's Server-Sent Events (GET /api/v1/cases/{id}/events, neunn/serve/
// case_events.py). "change" carries the cells others decided (read from the shared audit trail, so any server process's
// decisions arrive) and the case row; "presence" names who has the case open. EventSource reconnects by itself and
// sends the last event's id back, so nothing between is missed; the session cookie goes along (same origin).
let source = null;

/** Follow case ``caseId``: ``onChange(change)`` for each batch of changes, ``onPresence(names)`` when people come or go. */
export function followCase(caseId, onChange, onPresence) {
  stopFollowing();
  if (typeof EventSource === "undefined") return;
  source = new EventSource(`/api/v1/cases/${caseId}/events`);
  source.addEventListener("change", (event) => onChange(JSON.parse(event.data)));
  source.addEventListener("presence", (event) => onPresence(JSON.parse(event.data).viewers));
}

export function stopFollowing() {
  source?.close();
  source = null;
}
