"""Results to the LIS are never lost: a signature queues its deliveries in its own transaction; a FHIR endpoint on
loopback that is down, then refuses, then accepts gets the bundle once it accepts (a maintained FHIR library reads
it); a folder gets both files; an amendment is delivered again; a server that never tried leaves them for the next."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from fhir.resources.bundle import Bundle

from neunn.cases.casework import ModelInfo, NewCell, add_cells, create_case, decide, sign
from neunn.cases.errors import Invalid
from neunn.cases.lis_delivery import deliver_due, deliveries_of, parse_target, parse_targets, queue_deliveries
from neunn.cases.times import utc_now
from neunn.cases.users import add_user
from neunn.inference.predictor import Predictor
from neunn.serve import create_app

MODEL = ModelInfo(run="tiny", weights_sha256=None, arch="resnet10t", backend="torch", temperature=1.0,
                  review_threshold=0.6, critical_classes=("GBI",), classes=("NEU", "GBI"))


class Receiver:
    """A FHIR endpoint on loopback answering each POST with the next status of ``answers`` (then 201)."""

    def __init__(self, answers: list[int]) -> None:
        self.answers, self.bodies = list(answers), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 201
                if status < 300:
                    receiver.bodies.append((self.headers["Content-Type"], body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def signed_setup(case_store):
    with case_store.transaction() as db:
        pat = add_user(db, "pat", "pat-password-1", role="pathologist")
        case = create_case(db, pat, "S-LIS-1")
        cells = add_cells(db, pat, case["id"], MODEL, [NewCell(
            name=f"c{i}.png", image_sha256=case_store.images.put(uuid.uuid4().bytes), image_ext="png", label=label,
            probability=0.9, probabilities={"NEU": 0.1, "GBI": 0.9} if label == "GBI" else {"NEU": 0.9, "GBI": 0.1},
            needs_review=False) for i, label in enumerate(["GBI", "NEU"])])
        decide(db, pat, case["id"], cells[0]["id"], "GBI", version=1)
    return pat, case["id"], cells


def test_a_refusing_endpoint_gets_the_bundle_once_it_accepts_and_nothing_is_lost(case_store, signed_setup, tmp_path):
    pat, case_id, _ = signed_setup
    receiver = Receiver([503, 400])
    targets = parse_targets([receiver.url, str(tmp_path / "inbox")])
    try:
        with case_store.transaction() as db:  # the signature and what it owes the LIS, in one transaction
            sign(db, pat, case_id)
            queue_deliveries(db, case_id, targets, reason="sign")
        first = {d["target"]: d for d in deliver_due(case_store)}
        assert first[f"folder:{tmp_path / 'inbox'}"]["state"] == "delivered"
        assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["S-LIS-1.fhir.json", "S-LIS-1.hl7"]
        down = first[receiver.url]
        assert (down["state"], down["attempts"], down["last_error"]) == ("pending", 1, "the endpoint answered HTTP 503")
        assert deliver_due(case_store) == []  # not due yet: it waits before trying again
        later = utc_now() + timedelta(seconds=6)
        refused, = deliver_due(case_store, now=later)
        assert (refused["state"], refused["attempts"], refused["last_error"]) == ("pending", 2,
                                                                                  "the endpoint answered HTTP 400")
        delivered, = deliver_due(case_store, now=later + timedelta(seconds=11))
        assert (delivered["state"], delivered["attempts"], delivered["last_error"]) == ("delivered", 3, None)
        assert deliver_due(case_store, now=later + timedelta(hours=2)) == []  # delivered once, never again
        content_type, body = receiver.bodies[0]
        assert content_type.startswith("application/fhir+json") and len(receiver.bodies) == 1
        bundle = Bundle.model_validate_json(body)
        report = next(e.resource for e in bundle.entry if e.resource.__resource_type__ == "DiagnosticReport")
        assert report.status == "final"
    finally:
        receiver.close()


def test_an_unreachable_endpoint_waits_and_says_why(case_store, signed_setup):
    pat, case_id, _ = signed_setup
    with case_store.transaction() as db:
        sign(db, pat, case_id)
        queue_deliveries(db, case_id, parse_targets(["http://127.0.0.1:9/fhir"]), reason="sign")  # port 9: nobody
    waiting, = deliver_due(case_store)
    assert waiting["state"] == "pending" and waiting["last_error"].startswith("the endpoint cannot be reached")
    with case_store.transaction() as db:
        assert deliveries_of(db, case_id)[0]["next_attempt_at"] > waiting["created_at"]


def test_the_server_delivers_a_signature_and_an_amendment_and_a_restart_delivers_what_was_owed(
        trained_run, case_store, signed_setup, tmp_path):
    pat, case_id, cells = signed_setup
    receiver = Receiver([])
    try:
        app = create_app(Predictor.from_run(trained_run), store=case_store, model_info={"run": "tiny"},
                         lis_targets=[receiver.url])
        client = TestClient(app)
        token = client.post("/api/v1/token", data={"username": "pat", "password": "pat-password-1"}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        assert client.post(f"/api/v1/cases/{case_id}/signature", headers=auth).status_code == 200
        amended = client.put(f"/api/v1/cases/{case_id}/cells/{cells[1]['id']}/decision", headers=auth,
                             json={"label": "GBI", "version": 2, "reason": "re-read"})  # 2: accepted at signing
        assert amended.status_code == 200, amended.text
        states = client.get(f"/api/v1/cases/{case_id}/deliveries", headers=auth).json()["deliveries"]
        assert [(d["reason"], d["state"]) for d in states] == [("sign", "delivered"), ("amend", "delivered")]
        assert len(receiver.bodies) == 2
        counts = [json.loads(body) for _, body in receiver.bodies]
        assert counts[0] != counts[1]  # the amended results, not the first ones again
        # A signature whose server died before trying: the next server's delivery loop delivers it.
        with case_store.transaction() as db:
            other = create_case(db, pat, "S-LIS-2")
            add_cells(db, pat, other["id"], MODEL, [NewCell(
                name="n.png", image_sha256=case_store.images.put(uuid.uuid4().bytes), image_ext="png", label="NEU",
                probability=0.9, probabilities={"NEU": 0.9, "GBI": 0.1}, needs_review=False)])
            sign(db, pat, other["id"])
            queue_deliveries(db, other["id"], parse_targets([receiver.url]), reason="sign")
        with TestClient(create_app(Predictor.from_run(trained_run), store=case_store, model_info={"run": "tiny"},
                                   lis_targets=[receiver.url])):
            deadline = utc_now() + timedelta(seconds=15)
            while len(receiver.bodies) < 3 and utc_now() < deadline:
                threading.Event().wait(0.2)
        assert len(receiver.bodies) == 3
    finally:
        receiver.close()


def test_a_target_is_a_folder_or_an_http_endpoint(tmp_path):
    assert parse_target("https://lis.example/fhir").kind == "http"
    assert parse_target(f"folder:{tmp_path}").where == str(tmp_path.resolve())
    assert parse_target(str(tmp_path)).name == f"folder:{tmp_path.resolve()}"
    with pytest.raises(Invalid):
        parse_target("folder:")
