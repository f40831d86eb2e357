"""Two-level verification as laboratories work: technologists pre-classify, pathologists verify and sign (a critical
finding needs one), critical-value communication recorded, voids with reasons, "other cell type", an image counted
once, and accounts an admin manages (roles, re-enabling, password resets) and users change their own password in."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import text

from neunn.cases import open_store
from neunn.cases.casework import (
    ModelInfo,
    NewCell,
    add_cells,
    audit_trail,
    create_case,
    decide,
    get_case,
    list_cases,
    record_critical_call,
    sign,
    split_repeats,
    submit,
    void_case,
    void_cell,
)
from neunn.cases.database import schema_revision
from neunn.cases.differential import case_differential
from neunn.cases.errors import Conflict, Invalid, NotAllowed, NotLoggedIn
from neunn.cases.export import export_reviewed
from neunn.cases.times import utc_now
from neunn.cases.users import add_user, check_password, set_active, set_role
from neunn.inference.predictor import Predictor
from neunn.serve import create_app

CLASSES = ("NEU", "HYP", "GBI", "BAC")
MODEL = ModelInfo(run="tiny", weights_sha256="ab" * 32, arch="resnet10t", backend="torch", temperature=1.0,
                  review_threshold=0.6, critical_classes=("GBI", "BAC"), classes=CLASSES)
PASSWORDS = {"tess": "tess-password-1", "pat": "pat-password-1", "chief": "chief-password-1"}
ROLES = {"tess": "technologist", "pat": "pathologist", "chief": "admin"}


def _new_cell(store, label: str, *, review: bool = False, image: bytes | None = None) -> NewCell:
    sha = store.images.put(image if image is not None else uuid.uuid4().bytes)
    return NewCell(name=f"{sha[:8]}.png", image_sha256=sha, image_ext="png", label=label, probability=0.9,
                   probabilities={c: 0.9 if c == label else 0.1 / 3 for c in CLASSES}, needs_review=review)


@pytest.fixture
def people(case_store):
    with case_store.transaction() as db:
        return {name: add_user(db, name, PASSWORDS[name], role=ROLES[name]) for name in PASSWORDS}


def _case(store, who, labels, sample="S-1", **flags):
    with store.transaction() as db:
        case = create_case(db, who, sample)
        cells = add_cells(db, who, case["id"], MODEL, [_new_cell(store, label, **flags) for label in labels])
    return case["id"], cells


def test_a_critical_case_needs_a_pathologist_a_technologist_submits_it(case_store, people):
    tess, pat = people["tess"], people["pat"]
    case_id, (gbi, neu) = _case(case_store, tess, ["GBI", "NEU"])
    with case_store.transaction() as db:
        decide(db, tess, case_id, gbi["id"], "GBI", version=1)
    with case_store.transaction() as db, pytest.raises(NotAllowed, match="1 critical cell .as the model called them or as they stand.: a pathologist signs it"):
        sign(db, tess, case_id)
    with case_store.transaction() as db:
        assert submit(db, tess, case_id)["status"] == "to_verify"
        assert list_cases(db, status="to_verify")[0]["submitted_by"] == "tess"
    with case_store.transaction() as db, pytest.raises(Conflict, match="already submitted by tess"):
        submit(db, tess, case_id)
    with case_store.transaction() as db:  # the verifier may still correct a cell, then signs
        decide(db, pat, case_id, neu["id"], "HYP", version=1)
        row = sign(db, pat, case_id)
        trail = audit_trail(db, case_id)
    assert (row["status"], row["signed_by"], row["submitted_by"]) == ("signed", "pat", "tess")
    signature = next(e for e in trail if e["action"] == "sign")
    assert signature["user"] == "pat" and signature["detail"]["verified_submission"] is True
    assert signature["detail"]["n_critical"] == 1
    assert [e["action"] for e in trail].index("submit") < [e["action"] for e in trail].index("sign")


def test_a_technologist_signs_a_case_without_a_critical_finding(case_store, people):
    case_id, (neu,) = _case(case_store, people["tess"], ["NEU"])
    with case_store.transaction() as db:
        assert sign(db, people["tess"], case_id)["signed_by"] == "tess"


def test_verification_cannot_be_bypassed_by_reclassifying_the_critical_call(case_store, people):
    tess = people["tess"]
    case_id, (gbi,) = _case(case_store, tess, ["GBI"])
    with case_store.transaction() as db:  # the model's GBI call reclassified: still a pathologist's to sign
        decide(db, tess, case_id, gbi["id"], "NEU", version=1)
    with case_store.transaction() as db, pytest.raises(NotAllowed, match="as the model called them"):
        sign(db, tess, case_id)
    calm_id, _ = _case(case_store, tess, ["NEU"], sample="S-2")
    with case_store.transaction() as db:
        submit(db, tess, calm_id)
    with case_store.transaction() as db, pytest.raises(NotAllowed, match="submitted for verification"):
        sign(db, tess, calm_id)  # once submitted, the submitter does not sign it themselves
    with case_store.transaction() as db:
        assert sign(db, people["pat"], calm_id)["status"] == "signed"


def test_a_critical_call_records_to_whom_how_when_and_by_whom(case_store, people):
    pat = people["pat"]
    case_id, _ = _case(case_store, pat, ["BAC", "NEU"])
    earlier = utc_now() - timedelta(minutes=20)
    with case_store.transaction() as db:
        call = record_critical_call(db, pat, case_id, " Dr Lee, ward 5 ", "phone", communicated_at=earlier,
                                    note="read back")
    assert (call["recipient"], call["method"], call["recorded_by"], call["note"]) == (
        "Dr Lee, ward 5", "phone", "pat", "read back")
    assert call["communicated_at"] < call["recorded_at"]
    with case_store.transaction() as db:
        case = get_case(db, case_id)
        assert case["n_critical_calls"] == 1 and case["critical_calls"] == [call]
        assert [e["action"] for e in audit_trail(db, case_id)][-1] == "communicate"
    with case_store.transaction() as db, pytest.raises(Invalid, match="in the future"):
        record_critical_call(db, pat, case_id, "Dr Lee", "phone", communicated_at=utc_now() + timedelta(hours=1))
    with case_store.transaction() as db, pytest.raises(Invalid, match="Unknown method 'fax'"):
        record_critical_call(db, pat, case_id, "Dr Lee", "fax")
    calm_id, _ = _case(case_store, pat, ["NEU"], sample="S-2")
    with case_store.transaction() as db, pytest.raises(Conflict, match="no critical finding to communicate"):
        record_critical_call(db, pat, calm_id, "Dr Lee", "phone")


def test_a_voided_cell_is_kept_with_its_reason_and_leaves_every_count(case_store, people):
    pat = people["pat"]
    case_id, (gbi, neu, hyp) = _case(case_store, pat, ["GBI", "NEU", "HYP"])
    with case_store.transaction() as db, pytest.raises(Invalid, match="needs a reason"):
        void_cell(db, pat, case_id, gbi["id"], "  ", version=1)
    with case_store.transaction() as db:
        voided = void_cell(db, pat, case_id, gbi["id"], "another patient's slide", version=1)
    assert (voided["voided"], voided["void_reason"], voided["voided_by"]) == (True, "another patient's slide", "pat")
    with case_store.transaction() as db:
        case = get_case(db, case_id)
        assert (case["n_cells"], case["n_critical"], case["n_flagged_open"], case["n_voided_cells"]) == (2, 0, 0, 1)
        differential = case_differential(case["cells"], case["models"])
        assert differential["n_cells"] == 2 and differential["alert"]["critical"] is False
        with pytest.raises(Conflict, match="voided"):
            decide(db, pat, case_id, gbi["id"], "GBI", version=2)
    with case_store.transaction() as db:  # the voided critical cell needs no decision: the case signs
        sign(db, pat, case_id)
        trail = audit_trail(db, case_id)
    assert any(e["action"] == "void_cell" and e["detail"] == {"reason": "another patient's slide"} for e in trail)
    report = export_reviewed(case_store, case_store.images.root.parent / "export")
    assert report["n_cells"] == 2 and "GBI" not in report["per_class"]


def test_a_voided_case_leaves_the_worklist_and_takes_nothing_more(case_store, people):
    tess = people["tess"]
    case_id, (neu,) = _case(case_store, tess, ["NEU"])
    with case_store.transaction() as db:
        row = void_case(db, tess, case_id, "wrong sample ID")
    assert (row["status"], row["voided_by"], row["void_reason"]) == ("void", "tess", "wrong sample ID")
    with case_store.transaction() as db:
        assert list_cases(db) == [] and [r["id"] for r in list_cases(db, status="void")] == [case_id]
        with pytest.raises(Conflict, match="void"):
            add_cells(db, tess, case_id, MODEL, [_new_cell(case_store, "NEU")])
        with pytest.raises(Conflict, match="void"):
            sign(db, people["pat"], case_id)
    signed_id, _ = _case(case_store, tess, ["NEU"], sample="S-2")
    with case_store.transaction() as db:
        sign(db, tess, signed_id)
    with case_store.transaction() as db, pytest.raises(Conflict, match="correct it by amendment"):
        void_case(db, people["chief"], signed_id, "too late")


def test_other_cell_type_is_counted_apart_and_never_exported(case_store, people):
    pat = people["pat"]
    case_id, (a, b) = _case(case_store, pat, ["NEU", "NEU"])
    with case_store.transaction() as db:
        decide(db, pat, case_id, a["id"], "other_cell_type", version=1)
        sign(db, pat, case_id)
        case = get_case(db, case_id)
    differential = case_differential(case["cells"], case["models"])
    assert (differential["n_cells"], differential["n_other_cell_type"], differential["n_identified"],
            differential["counts"]["NEU"], differential["shares"]["NEU"]) == (2, 1, 1, 1, 1.0)
    report = export_reviewed(case_store, case_store.images.root.parent / "export")
    assert (report["n_cells"], report["n_other_cell_type_left_out"], report["per_class"]) == (1, 1, {"NEU": 1})
    with case_store.transaction() as db, pytest.raises(Invalid, match="nor 'unidentified' or 'other_cell_type'"):
        decide(db, pat, case_id, b["id"], "eosinophil", version=2, reason="x")


def test_the_same_image_twice_is_one_cell(case_store, people):
    pat = people["pat"]
    case_id, (first,) = _case(case_store, pat, ["NEU"])
    image = case_store.images.read(first["image_sha256"])
    again = [_new_cell(case_store, "NEU", image=image), _new_cell(case_store, "HYP", image=b"new"),
             _new_cell(case_store, "HYP", image=b"new")]
    with case_store.transaction() as db:
        fresh, repeats = split_repeats(db, case_id, again)
    assert [c.label for c in fresh] == ["HYP"]
    assert repeats == [{"name": again[0].name, "cell_id": first["id"], "same_as": None},
                       {"name": again[2].name, "cell_id": None, "same_as": again[1].name}]


def test_worklist_puts_untouched_critical_cases_first(case_store, people):
    pat = people["pat"]
    busy_id, (gbi, neu) = _case(case_store, pat, ["GBI", "NEU"], sample="BUSY")
    with case_store.transaction() as db:
        decide(db, pat, busy_id, neu["id"], "NEU", version=1)
    _case(case_store, pat, ["NEU"], sample="CALM")
    _case(case_store, pat, ["GBI", "BAC", "BAC"], sample="UNTOUCHED")  # made last: the newest, but that is not why
    with case_store.transaction() as db:
        assert [r["sample_id"] for r in list_cases(db)] == ["UNTOUCHED", "BUSY", "CALM"]


def test_roles_change_and_users_come_back_but_an_admin_always_remains(case_store, people):
    chief, tess = people["chief"], people["tess"]
    with case_store.transaction() as db:
        with pytest.raises(NotAllowed, match="Only an admin"):
            set_role(db, "pat", "technologist", by=tess)
        assert set_role(db, "tess", "pathologist", by=chief).role == "pathologist"
        set_active(db, "tess", False, by=chief)
    with case_store.transaction() as db, pytest.raises(NotLoggedIn):
        check_password(db, "tess", PASSWORDS["tess"])
    with case_store.transaction() as db:
        set_active(db, "tess", True, by=chief)
        assert check_password(db, "tess", PASSWORDS["tess"]).role == "pathologist"
        with pytest.raises(Conflict, match="only active admin"):
            set_role(db, "chief", "pathologist", by=chief)
        with pytest.raises(Conflict, match="only active admin"):
            set_active(db, "chief", False, by=chief)
        with pytest.raises(Invalid, match="choose technologist, pathologist, admin"):
            set_role(db, "tess", "reviewer", by=chief)


# -- over HTTP ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.from_run(trained_run)


@pytest.fixture
def app(predictor, case_store, people):
    return create_app(predictor, store=case_store, model_info={"run": "tiny"})


def _bearer(app, name: str, password: str | None = None) -> dict[str, str]:
    answer = TestClient(app).post("/api/v1/token", data={"username": name, "password": password or PASSWORDS[name]})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_the_api_walks_the_two_levels_and_records_the_call(app, phantom_dir):
    client = TestClient(app)
    tess, pat = _bearer(app, "tess"), _bearer(app, "pat")
    case = client.post("/api/v1/cases", json={"sample_id": "S-API"}, headers=tess).json()
    image = sorted(phantom_dir.rglob("*.png"))[0]
    upload = client.post(f"/api/v1/cases/{case['id']}/cells", headers=tess,
                         files=[("files", (image.name, image.read_bytes(), "image/png"))] * 2).json()
    assert (len(upload["cells"]), upload["n_failed"], upload["errors"][0]["status"]) == (1, 1, 409)
    assert upload["errors"][0]["duplicate_of"] is None and "already in the case" in upload["errors"][0]["error"]
    cell = upload["cells"][0]
    decided = client.put(f"/api/v1/cases/{case['id']}/cells/{cell['id']}/decision", headers=tess,
                         json={"label": "GBI", "version": cell["version"]})
    assert decided.status_code == 200 and decided.json()["critical"] is True
    refused = client.post(f"/api/v1/cases/{case['id']}/signature", headers=tess)
    assert refused.status_code == 403 and "a pathologist signs it" in refused.json()["error"]
    assert client.post(f"/api/v1/cases/{case['id']}/submission", headers=tess).json()["status"] == "to_verify"
    listed = client.get("/api/v1/cases", params={"status": "to_verify"}, headers=pat).json()["cases"]
    assert [c["sample_id"] for c in listed] == ["S-API"]
    call = client.post(f"/api/v1/cases/{case['id']}/critical-calls", headers=pat,
                       json={"recipient": "Dr Lee, ward 5", "method": "phone",
                             "communicated_at": "2026-01-01T09:30:00+00:00"})
    assert call.status_code == 201 and call.json()["recorded_by"] == "pat"
    assert call.json()["communicated_at"].startswith("2026-01-01T09:30")
    naive = client.post(f"/api/v1/cases/{case['id']}/critical-calls", headers=pat,
                        json={"recipient": "Dr Lee", "method": "phone", "communicated_at": "2026-01-01T09:30:00"})
    assert naive.status_code == 422  # a time without its zone is ambiguous
    signed = client.post(f"/api/v1/cases/{case['id']}/signature", headers=pat).json()
    assert (signed["status"], signed["signed_by"], signed["submitted_by"]) == ("signed", "pat", "tess")
    assert client.get(f"/api/v1/cases/{case['id']}", headers=pat).json()["critical_calls"][0]["recipient"] == \
        "Dr Lee, ward 5"
    pdf = PdfReader(io.BytesIO(client.get(f"/api/v1/cases/{case['id']}/report.pdf", headers=pat).content))
    report = " ".join(" ".join(page.extract_text().split()) for page in pdf.pages)
    assert "Critical findings communicated" in report and "Dr Lee, ward 5" in report
    assert "submitted for verification by tess" in report and "Signed by pat" in report
    hl7 = client.get(f"/api/v1/cases/{case['id']}/hl7", headers=pat).text
    assert "Submitted for verification by tess" in hl7 and "communicated to Dr Lee" in hl7
    other = client.post("/api/v1/cases", json={"sample_id": "S-WRONG"}, headers=tess).json()
    voided = client.post(f"/api/v1/cases/{other['id']}/void", json={"reason": "wrong patient"}, headers=tess)
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    assert client.post(f"/api/v1/cases/{other['id']}/void", json={"reason": ""}, headers=tess).status_code == 422


def test_admins_manage_users_and_users_change_their_own_password(app):
    client = TestClient(app)
    chief, tess = _bearer(app, "chief"), _bearer(app, "tess")
    assert client.patch("/api/v1/users/pat", json={"role": "technologist"}, headers=tess).status_code == 403
    changed = client.patch("/api/v1/users/tess", json={"role": "pathologist"}, headers=chief)
    assert changed.status_code == 200 and changed.json()["role"] == "pathologist"
    assert client.patch("/api/v1/users/tess", json={}, headers=chief).status_code == 422
    assert client.patch("/api/v1/users/chief", json={"active": False}, headers=chief).status_code == 409
    added = client.post("/api/v1/users", json={"name": "nia", "password": "nia-password-1"}, headers=chief)
    assert added.status_code == 201 and added.json()["role"] == "technologist"

    other_login = _bearer(app, "tess")  # a second login of tess: it ends when she changes her password
    wrong = client.put("/api/v1/session/password", headers=tess,
                       json={"current_password": "not it at all", "new_password": "tess-password-2"})
    assert wrong.status_code == 403
    assert client.put("/api/v1/session/password", headers=tess, json={
        "current_password": PASSWORDS["tess"], "new_password": "tess-password-2"}).status_code == 200
    assert client.get("/api/v1/cases", headers=tess).status_code == 200  # the login that changed it goes on
    assert client.get("/api/v1/cases", headers=other_login).status_code == 401
    assert TestClient(app).post("/api/v1/token", data={"username": "tess", "password": PASSWORDS["tess"]}
                                ).status_code == 401

    reset = client.put("/api/v1/users/tess/password", json={"password": "temporary-pass-1"}, headers=chief)
    assert reset.status_code == 200
    assert client.get("/api/v1/cases", headers=tess).status_code == 401  # every login of hers ended
    _bearer(app, "tess", "temporary-pass-1")
    assert client.patch("/api/v1/users/tess", json={"active": False}, headers=chief).json()["active"] is False
    assert TestClient(app).post("/api/v1/token", data={"username": "tess", "password": "temporary-pass-1"}
                                ).status_code == 401
    assert client.patch("/api/v1/users/tess", json={"active": True}, headers=chief).json()["active"] is True
    _bearer(app, "tess", "temporary-pass-1")


# -- the store of an earlier version, and the command line ---------------------------------------------------------------

def test_a_store_of_0005_keeps_its_reviewers_rights_as_pathologists(store_url):
    folder, url = store_url
    old = open_store(folder, db_url=url, migrate_to="0005")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, role, password_hash, active, created_at) VALUES "
                          "(1, 'ana', 'reviewer', 'x', true, '2026-01-01'), (2, 'boss', 'admin', 'x', true, "
                          "'2026-01-01')"))
        conn.execute(text("INSERT INTO cases (id, sample_id, status, created_by, created_at, updated_at, n_amendments) "
                          "VALUES (4, 'OLD-4', 'open', 1, '2026-01-01', '2026-01-02', 0)"))
    old.close()
    store = open_store(folder, db_url=url)
    assert schema_revision(store.engine) == "0007"
    with store.transaction() as db:
        roles = dict(db.execute(text("SELECT name, role FROM users")).all())
        row = list_cases(db)[0]
    assert roles == {"ana": "pathologist", "boss": "admin"}
    assert (row["sample_id"], row["status"], row["submitted_by"], row["n_voided_cells"]) == ("OLD-4", "to_review",
                                                                                              None, 0)
    store.close()


def _neunn(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neunn", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_the_command_line_changes_roles_re_enables_and_resets_passwords(tmp_path):
    store = ["--store", str(tmp_path / "store")]
    assert _neunn("users", "add", "ana", *store, stdin="ana-password-1\n").returncode == 0
    listed = _neunn("users", "list", *store).stdout
    assert "ana\ttechnologist\tactive" in listed
    assert _neunn("users", "role", "ana", "pathologist", *store).stdout.strip() == "ana is now a pathologist"
    bad = _neunn("users", "role", "ana", "reviewer", *store)
    assert bad.returncode != 0 and "Unknown role 'reviewer'" in bad.stderr and "Traceback" not in bad.stderr
    assert _neunn("users", "disable", "ana", *store).returncode == 0
    assert _neunn("users", "enable", "ana", *store).stdout.startswith("re-enabled ana")
    reset = _neunn("users", "password", "ana", *store, stdin="ana-password-2\n")
    assert reset.returncode == 0, reset.stderr
    with open_store(tmp_path / "store").transaction() as db:
        assert check_password(db, "ana", "ana-password-2").role == "pathologist"
    status = _neunn("cases", "list", "--status", "done", *store)
    assert status.returncode != 0 and "Unknown status 'done'" in status.stderr
