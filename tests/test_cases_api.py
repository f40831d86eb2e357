"""The review station with a case store, over HTTP: logins, roles, CSRF, cases, decisions, signature, audit, export."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from neunn.cases.users import add_user
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.serve import create_app

PASSWORDS = {"ana": "ana-password-1", "ben": "ben-password-1", "chief": "chief-password"}


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.from_run(trained_run)


@pytest.fixture
def app(predictor, case_store):
    with case_store.transaction() as db:
        for name, password in PASSWORDS.items():
            add_user(db, name, password, role="admin" if name == "chief" else "pathologist")
    return create_app(predictor, store=case_store, model_info={"run": "tiny"})


@pytest.fixture(scope="module")
def images(phantom_dir) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(phantom_dir.rglob("*.png"))[::12][:6]]


def browser(app, name: str) -> tuple[TestClient, dict[str, str]]:
    """A client logged in with the session cookie, and the CSRF header its changes need."""
    client = TestClient(app)
    answer = client.post("/api/v1/session", json={"name": name, "password": PASSWORDS[name]})
    assert answer.status_code == 200, answer.text
    assert client.cookies.get("neunn_session")
    return client, {"X-CSRF-Token": answer.json()["csrf_token"]}


def bearer(app, name: str) -> dict[str, str]:
    answer = TestClient(app).post("/api/v1/token", data={"username": name, "password": PASSWORDS[name]})
    assert answer.status_code == 200 and answer.json()["token_type"] == "bearer"
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_nothing_about_cases_answers_without_a_login(app):
    anonymous = TestClient(app)
    schema = app.openapi()["paths"]
    open_routes = {("/api/v1/session", "post"), ("/api/v1/session", "get"), ("/api/v1/session", "delete"),
                   ("/api/v1/token", "post"), ("/healthz", "get")}
    checked = 0
    for path, methods in schema.items():
        for method in methods:
            if (path, method) in open_routes:
                continue
            url = path.replace("{case_id}", "1").replace("{cell_id}", "1")
            answer = anonymous.request(method.upper(), url)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert "cases" not in answer.json() and "cells" not in answer.json()
            checked += 1
    assert checked >= 12
    assert anonymous.get("/api/v1/cases", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert anonymous.get("/").status_code == 200 and anonymous.get("/login").status_code == 200  # pages hold no data


def test_the_session_cookie_is_httponly_samesite_and_changes_need_the_csrf_token(app):
    client = TestClient(app)
    answer = client.post("/api/v1/session", json={"name": "ana", "password": PASSWORDS["ana"]})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # plain http on loopback
    csrf = answer.json()["csrf_token"]
    assert client.post("/api/v1/cases", json={"sample_id": "S-1"}).status_code == 403
    assert client.post("/api/v1/cases", json={"sample_id": "S-1"}, headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert client.post("/api/v1/cases", json={"sample_id": "S-1"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert client.get("/api/v1/session").json()["csrf_token"] == csrf
    https = TestClient(app, base_url="https://testserver")
    assert "secure" in https.post("/api/v1/session", json={"name": "ana", "password": PASSWORDS["ana"]}
                                  ).headers["set-cookie"].lower()


def test_logins_from_another_site_and_wrong_passwords_are_refused(app):
    client = TestClient(app)
    assert client.post("/api/v1/session", json={"name": "ana", "password": PASSWORDS["ana"]},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    wrong = client.post("/api/v1/session", json={"name": "ana", "password": "nope-nope-nope"})
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("Wrong user name or password")
    assert client.post("/api/v1/token", data={"username": "ana", "password": "x"}).status_code == 401


def test_logout_ends_the_session_on_the_server(app):
    client, csrf = browser(app, "ana")
    stolen = client.cookies.get("neunn_session")
    assert client.delete("/api/v1/session", headers=csrf).status_code == 200
    replay = TestClient(app)
    replay.cookies.set("neunn_session", stolen)
    assert replay.get("/api/v1/cases").status_code == 401


def test_roles_decide_who_may_list_users(app):
    assert TestClient(app).get("/api/v1/users", headers=bearer(app, "ana")).status_code == 403
    users = TestClient(app).get("/api/v1/users", headers=bearer(app, "chief")).json()["users"]
    assert {(u["name"], u["role"]) for u in users} == {("ana", "pathologist"), ("ben", "pathologist"), ("chief", "admin")}
    assert all("password" not in key for u in users for key in u)


def test_a_review_from_upload_to_signature_and_audit(app, images):
    ana, csrf = browser(app, "ana")
    case = ana.post("/api/v1/cases", json={"sample_id": "S-2026-1"}, headers=csrf).json()
    files = [("files", item) for item in images] + [("files", ("broken.png", b"\x89PNG\r\n\x1a\n broken"))]
    upload = ana.post(f"/api/v1/cases/{case['id']}/cells", files=files, headers=csrf)
    assert upload.status_code == 200
    body = upload.json()
    assert (body["n_files"], body["n_failed"], len(body["cells"])) == (7, 1, 6)
    assert body["errors"][0]["name"] == "broken.png" and body["errors"][0]["status"] == 422
    stored = ana.get(f"/api/v1/cases/{case['id']}").json()
    assert [c["name"] for c in stored["cells"]] == [name for name, _ in images]
    assert ana.get(stored["cells"][0]["image_url"]).content == images[0][1]
    first = stored["cells"][0]
    other = next(c for c in stored["models"][0]["classes"] if c != first["predicted_label"])
    changed = ana.put(f"/api/v1/cases/{case['id']}/cells/{first['id']}/decision",
                      json={"label": other, "version": first["version"]}, headers=csrf)
    assert changed.status_code == 200 and changed.json()["label"] == other
    for cell in stored["cells"][1:]:
        if cell["flagged"]:
            assert ana.put(f"/api/v1/cases/{case['id']}/cells/{cell['id']}/decision",
                           json={"label": cell["predicted_label"], "version": cell["version"]},
                           headers=csrf).status_code == 200
    signed = ana.post(f"/api/v1/cases/{case['id']}/signature", headers=csrf)
    assert signed.status_code == 200 and signed.json()["status"] == "signed"

    ben = bearer(app, "ben")  # a colleague, through the API
    client = TestClient(app)
    listed = client.get("/api/v1/cases?status=signed", headers=ben).json()["cases"]
    assert [(c["sample_id"], c["signed_by"]) for c in listed] == [("S-2026-1", "ana")]
    trail = client.get(f"/api/v1/cases/{case['id']}/audit", headers=ben).json()["audit"]
    assert ("ana", "reclassify", first["predicted_label"], other) in [(e["user"], e["action"], e["from"], e["to"])
                                                                      for e in trail]
    assert trail[-1]["action"] == "sign"
    late = client.put(f"/api/v1/cases/{case['id']}/cells/{first['id']}/decision",
                      json={"label": first["predicted_label"], "version": 2, "reason": "second look"}, headers=ben)
    assert late.status_code == 403 and "signer or an admin" in late.json()["error"]
    more = client.post(f"/api/v1/cases/{case['id']}/cells", files=[("files", images[0])], headers=ben)
    assert more.status_code == 409 and "takes no new cells" in more.json()["error"]
    exported = client.get(f"/api/v1/cases/{case['id']}/export", headers=ben).json()
    assert exported["case"]["sample_id"] == "S-2026-1" and len(exported["cells"]) == 6
    assert exported["models"][0]["run"] == "tiny" and len(exported["models"][0]["weights_sha256"]) == 64
    cells_csv = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/cases/{case['id']}/export?format=csv",
                                                           headers=ben).text)))
    assert [r["final_label"] for r in cells_csv][0] == other and all(r["final_label"] for r in cells_csv)
    audit_csv = client.get(f"/api/v1/cases/{case['id']}/audit?format=csv", headers=ben)
    assert audit_csv.headers["content-type"].startswith("text/csv") and len(audit_csv.text.splitlines()) == len(trail) + 1


def test_a_stale_decision_gets_a_conflict_with_the_current_cell(app, images):
    ana, ben = bearer(app, "ana"), bearer(app, "ben")
    client = TestClient(app)
    case = client.post("/api/v1/cases", json={"sample_id": "S-c"}, headers=ana).json()
    cell = client.post(f"/api/v1/cases/{case['id']}/cells", files=[("files", images[0])], headers=ana).json()["cells"][0]
    url = f"/api/v1/cases/{case['id']}/cells/{cell['id']}/decision"
    assert client.put(url, json={"label": "NEU", "version": 1}, headers=ana).status_code == 200
    stale = client.put(url, json={"label": "GBI", "version": 1}, headers=ben)
    assert stale.status_code == 409 and "changed by ana" in stale.json()["error"]
    assert stale.json()["cell"]["label"] == "NEU" and stale.json()["cell"]["version"] == 2
    assert client.put(url, json={"label": "nonsense", "version": 2}, headers=ben).status_code == 422


def test_the_shared_token_is_only_for_ephemeral_serving(predictor, case_store):
    with pytest.raises(NeunnError, match="only for --ephemeral"):
        create_app(predictor, store=case_store, token="s3cret")


def test_ids_beyond_the_databases_integers_are_refused_not_a_server_error(app):
    auth = bearer(app, "ana")
    client = TestClient(app)
    huge = 666839375396120779160769527808  # beyond SQLite's and PostgreSQL's 64-bit INTEGER
    for method, url, body in (("GET", f"/api/v1/cases/{huge}", None),
                              ("GET", f"/api/v1/cases/1/cells/{huge}/image", None),
                              ("PUT", f"/api/v1/cases/1/cells/{huge}/decision", {"label": "NEU", "version": 1}),
                              ("PUT", "/api/v1/cases/1/cells/1/decision", {"label": "NEU", "version": huge}),
                              ("POST", "/api/v1/cases/1/bulk-confirmation", {"cells": [{"id": huge, "version": 1}]}),
                              ("GET", "/api/v1/cases/0", None)):
        answer = client.request(method, url, json=body, headers=auth)
        assert answer.status_code == 422, (method, url, answer.status_code, answer.text)
        assert "error" in answer.json()
    assert client.get("/api/v1/cases/7", headers=auth).status_code == 404  # in range, absent: not found
