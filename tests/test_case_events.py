"""Reviewers see each other: a case's event stream says who is on it and delivers decisions made elsewhere (another
server process or the command line writes the same trail), resuming from Last-Event-ID."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from neunn.cases.casework import ModelInfo, NewCell, add_cells, create_case, decide
from neunn.cases.users import add_user
from neunn.inference.predictor import Predictor
from neunn.serve import ServeLimits, create_app

CLASSES = ("NEU", "GBI")
MODEL = ModelInfo(run="tiny", weights_sha256=None, arch="resnet10t", backend="torch", temperature=1.0,
                  review_threshold=0.6, critical_classes=("GBI",), classes=CLASSES)


def _events(body: str) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of each event of a text/event-stream body."""
    found = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            found.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return found


@pytest.fixture
def setting(trained_run, case_store):
    with case_store.transaction() as db:
        ana = add_user(db, "ana", "ana-password-1", role="pathologist")
        add_user(db, "ben", "ben-password-1", role="pathologist")
        case = create_case(db, ana, "S-live")
        sha = case_store.images.put(uuid.uuid4().bytes)
        cell, = add_cells(db, ana, case["id"], MODEL, [NewCell(
            name="a.png", image_sha256=sha, image_ext="png", label="NEU", probability=0.9,
            probabilities={"NEU": 0.9, "GBI": 0.1}, needs_review=False)])
    app = create_app(Predictor.from_run(trained_run), store=case_store, model_info={"run": "tiny"},
                     limits=ServeLimits(max_event_stream_seconds=3))
    token = TestClient(app).post("/api/v1/token", data={"username": "ben", "password": "ben-password-1"}).json()
    return app, case_store, ana, case["id"], cell, {"Authorization": f"Bearer {token['access_token']}"}


def test_a_decision_made_elsewhere_arrives_with_who_is_on_the_case(setting):
    app, store, ana, case_id, cell, ben = setting

    def decide_later():  # as another server process would: straight into the store
        time.sleep(1.2)
        with store.transaction() as db:
            decide(db, ana, case_id, cell["id"], "GBI", version=1)

    writer = threading.Thread(target=decide_later)
    writer.start()
    answer = TestClient(app).get(f"/api/v1/cases/{case_id}/events", headers=ben)
    writer.join()
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    events = _events(answer.text)
    assert events[0][1:] == ("presence", {"viewers": ["ben"]})
    changes = [(i, data) for i, kind, data in events if kind == "change"]
    assert len(changes) == 1
    event_id, change = changes[0]
    assert [(e["action"], e["user"], e["to"]) for e in change["entries"]] == [("reclassify", "ana", "GBI")]
    assert change["cells"][0]["id"] == cell["id"] and change["cells"][0]["final_label"] == "GBI"
    assert change["case"]["n_critical"] == 1 and int(event_id) == change["last"]


def test_a_reconnecting_page_gets_what_it_missed_and_an_unknown_case_is_404(setting):
    app, store, ana, case_id, cell, ben = setting
    with store.transaction() as db:
        decide(db, ana, case_id, cell["id"], "GBI", version=1)
    answer = TestClient(app).get(f"/api/v1/cases/{case_id}/events", headers={**ben, "Last-Event-ID": "0"})
    changes = [data for _, kind, data in _events(answer.text) if kind == "change"]
    assert [e["action"] for e in changes[0]["entries"]] == ["create", "predict", "reclassify"]
    assert TestClient(app).get("/api/v1/cases/999/events", headers=ben).status_code == 404
    assert TestClient(app).get(f"/api/v1/cases/{case_id}/events").status_code == 401
