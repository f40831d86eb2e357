"""The case store on SQLite and on a real PostgreSQL server: the review's rules, the audit trail, the migrations."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from neunn.cases import open_store
from neunn.cases.casework import ModelInfo, NewCell, add_cells, audit_trail, create_case, decide, get_case
from neunn.cases.casework import list_cases, sign
from neunn.cases.database import migrate, schema_revision
from neunn.cases.errors import Conflict, Invalid, NotAllowed, NotLoggedIn
from neunn.cases.export import export_reviewed
from neunn.cases.schema import Base
from neunn.cases.users import add_user, check_password, set_active

MODEL = ModelInfo(run="tiny", weights_sha256="ab" * 32, arch="resnet10t", backend="torch", temperature=1.3,
                  review_threshold=0.5, critical_classes=("GBI",), classes=("NEU", "HYP", "GBI"))


def _cell(store, i: int, label: str = "NEU", *, p: float = 0.9, review: bool = False) -> NewCell:
    sha = store.images.put(f"fake image {i}".encode())
    return NewCell(name=f"cell{i}.png", image_sha256=sha, image_ext="png", label=label, probability=p,
                   probabilities={"NEU": p, "HYP": (1 - p) / 2, "GBI": (1 - p) / 2}, needs_review=review)


@pytest.fixture
def people(case_store):
    with case_store.transaction() as db:
        return (add_user(db, "ana", "ana-password-1", role="pathologist"), add_user(db, "ben", "ben-password-1", role="pathologist"),
                add_user(db, "chief", "chief-password", role="admin"))


def _case_with_cells(store, who, sample="S-1"):
    with store.transaction() as db:
        case = create_case(db, who, sample)
        cells = add_cells(db, who, case["id"], MODEL, [_cell(store, 0), _cell(store, 1, "GBI", p=0.7),
                                                       _cell(store, 2, "HYP", p=0.4, review=True)])
    return case["id"], cells


def test_a_case_is_kept_exactly_as_it_was_left(case_store, people):
    ana, _, _ = people
    case_id, cells = _case_with_cells(case_store, ana)
    with case_store.transaction() as db:
        decide(db, ana, case_id, cells[1]["id"], "NEU", version=1)
    case_store.close()
    reopened = open_store(case_store.images.root.parent, db_url=None if case_store.url.startswith("sqlite")
                          else case_store.url)
    with reopened.transaction() as db:
        case = get_case(db, case_id)
    assert case["status"] == "in_progress" and case["n_cells"] == 3 and case["n_decided"] == 1
    assert [c["label"] for c in case["cells"]] == ["NEU", "NEU", "HYP"]
    assert case["cells"][1]["decided_by"] == "ana" and case["cells"][1]["version"] == 2
    assert case["models"][0]["weights_sha256"] == "ab" * 32 and case["models"][0]["critical_classes"] == ["GBI"]
    reopened.close()


def test_a_models_screens_are_recorded_and_a_model_without_them_keeps_its_record(case_store, people):
    ana, _, _ = people
    screened = dataclasses.replace(MODEL, screens={"pallor_screen": {"finding": "HYP", "threshold": 0.5}})
    with case_store.transaction() as db:
        case = create_case(db, ana, "S-screens")
        add_cells(db, ana, case["id"], MODEL, [_cell(case_store, 10)])
        add_cells(db, ana, case["id"], screened, [_cell(case_store, 11)])
        add_cells(db, ana, case["id"], MODEL, [_cell(case_store, 12)])
        models = get_case(db, case["id"])["models"]
    assert [m["screens"] for m in models] == [None, {"pallor_screen": {"finding": "HYP", "threshold": 0.5}}]
    # The fingerprint of a model without screens is the one it had before the field existed (no second record).
    before = {k: v for k, v in dataclasses.asdict(MODEL).items() if k != "screens"}
    assert MODEL.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()


def test_two_reviewers_on_one_cell_get_a_conflict_not_an_overwrite(case_store, people):
    ana, ben, _ = people
    case_id, cells = _case_with_cells(case_store, ana)
    with case_store.transaction() as db:
        decide(db, ana, case_id, cells[0]["id"], "HYP", version=1)
    with pytest.raises(Conflict, match="changed by ana") as refused, case_store.transaction() as db:
        decide(db, ben, case_id, cells[0]["id"], "GBI", version=1)  # ben saw version 1
    assert refused.value.detail["cell"]["label"] == "HYP"
    with case_store.transaction() as db:
        assert get_case(db, case_id)["cells"][0]["final_label"] == "HYP"


def test_concurrent_decisions_on_one_cell_let_exactly_one_win(case_store, people):
    ana, ben, _ = people
    case_id, cells = _case_with_cells(case_store, ana)
    outcomes: list[str] = []

    def attempt(who, label):
        try:
            with case_store.transaction() as db:
                decide(db, who, case_id, cells[0]["id"], label, version=1)
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(who, label)) for who, label in ((ana, "HYP"), (ben, "GBI"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "saved"]
    with case_store.transaction() as db:
        assert len([e for e in audit_trail(db, case_id) if e["action"] == "reclassify"]) == 1


def test_signing_needs_flagged_cells_decided_then_locks_the_case(case_store, people):
    ana, ben, chief = people
    case_id, cells = _case_with_cells(case_store, ana)
    with pytest.raises(Conflict, match="2 flagged cells") as waiting, case_store.transaction() as db:
        sign(db, ana, case_id)  # the GBI call (critical) and the unsure HYP wait for a person
    assert set(waiting.value.detail["cells"]) == {cells[1]["id"], cells[2]["id"]}
    with case_store.transaction() as db:
        decide(db, ana, case_id, cells[1]["id"], "GBI", version=1)
        decide(db, ana, case_id, cells[2]["id"], "NEU", version=1)
        signed = sign(db, ana, case_id)
    assert signed["status"] == "signed" and signed["signed_by"] == "ana" and signed["n_decided"] == 3
    with pytest.raises(Conflict, match="already signed"), case_store.transaction() as db:
        sign(db, ben, case_id)
    with pytest.raises(Conflict, match="takes no new cells"), case_store.transaction() as db:
        add_cells(db, ana, case_id, MODEL, [_cell(case_store, 9)])
    with pytest.raises(Invalid, match="needs a reason"), case_store.transaction() as db:
        decide(db, ana, case_id, cells[0]["id"], "HYP", version=2)
    with pytest.raises(NotAllowed, match="only its signer or an admin"), case_store.transaction() as db:
        decide(db, ben, case_id, cells[0]["id"], "HYP", version=2, reason="looks hypogranular")
    with case_store.transaction() as db:
        amended = decide(db, chief, case_id, cells[0]["id"], "HYP", version=2, reason="looks hypogranular")
        trail = audit_trail(db, case_id)
        row = list_cases(db)[0]
    assert amended["label"] == "HYP" and row["n_amendments"] == 1 and row["status"] == "signed"
    actions = [(e["user"], e["action"], e["from"], e["to"]) for e in trail]
    assert actions[0] == ("ana", "create", None, "S-1")
    assert [a for a in actions if a[1] == "predict"] == [("ana", "predict", None, x) for x in ("NEU", "GBI", "HYP")]
    assert ("ana", "reclassify", "HYP", "NEU") in actions and ("ana", "confirm", "GBI", "GBI") in actions
    assert ("ana", "confirm", "NEU", "NEU") in actions  # accepted as classified at signing, by the signer
    assert actions[-2][1] == "sign" and actions[-1] == ("chief", "amend", "NEU", "HYP")
    assert trail[-1]["detail"] == {"reason": "looks hypogranular"}


def test_the_worklist_puts_critical_findings_first(case_store, people):
    ana, _, _ = people
    with case_store.transaction() as db:
        plain = create_case(db, ana, "plain")["id"]
        add_cells(db, ana, plain, MODEL, [_cell(case_store, 0)])
        critical = create_case(db, ana, "critical")["id"]
        add_cells(db, ana, critical, MODEL, [_cell(case_store, 1, "GBI")])
        empty = create_case(db, ana, "empty")["id"]
    with case_store.transaction() as db:
        assert [r["id"] for r in list_cases(db)][0] == critical
        assert {r["id"] for r in list_cases(db, status="to_review")} == {plain, critical, empty}
        with pytest.raises(Conflict, match="already exists"):
            create_case(db, ana, "plain")


def test_the_audit_trail_cannot_be_edited_even_in_the_database(case_store, people):
    ana, _, _ = people
    _case_with_cells(case_store, ana)
    for statement in ("UPDATE audit SET user_name = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(DBAPIError, match="append-only"), case_store.transaction() as db:
            db.execute(text(statement))
    with case_store.transaction() as db:
        assert {e["user"] for e in audit_trail(db, 1)} == {"ana"}


def test_passwords_are_argon2_hashes_and_logins_fail_alike(case_store, people):
    with case_store.transaction() as db:
        stored = db.execute(text("SELECT password_hash FROM users WHERE name = 'ana'")).scalar_one()
        assert stored.startswith("$argon2id$") and "ana-password-1" not in stored
        assert check_password(db, "ana", "ana-password-1").name == "ana"
        for name, password in (("ana", "wrong-password"), ("nobody", "ana-password-1")):
            with pytest.raises(NotLoggedIn, match="Wrong user name or password"):
                check_password(db, name, password)
        with pytest.raises(Invalid, match="too short"):
            add_user(db, "dan", "short")
        set_active(db, "ben", False)
    with pytest.raises(NotLoggedIn), case_store.transaction() as db:
        check_password(db, "ben", "ben-password-1")


def test_export_writes_signed_cells_by_final_label_with_provenance(case_store, people, tmp_path):
    ana, _, _ = people
    case_id, cells = _case_with_cells(case_store, ana)
    _case_with_cells(case_store, ana, sample="S-open")  # not signed: not exported
    with case_store.transaction() as db:
        decide(db, ana, case_id, cells[1]["id"], "GBI", version=1)
        decide(db, ana, case_id, cells[2]["id"], "NEU", version=1)
        sign(db, ana, case_id)
    report = export_reviewed(case_store, tmp_path / "reviewed")
    assert report["n_cells"] == 3 and report["n_corrected"] == 1 and report["per_class"] == {"GBI": 1, "NEU": 2}
    files = sorted(p.relative_to(tmp_path / "reviewed").as_posix() for p in (tmp_path / "reviewed").rglob("*.png"))
    assert [f.split("/")[0] for f in files] == ["GBI", "NEU", "NEU"]
    with open(tmp_path / "reviewed" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    corrected = next(r for r in rows if r["model_label"] != r["final_label"])
    assert (corrected["model_label"], corrected["final_label"], corrected["reviewer"], corrected["signed_by"],
            corrected["sample_id"], corrected["model_weights_sha256"]) == ("HYP", "NEU", "ana", "ana", "S-1", "ab" * 32)
    assert (tmp_path / "reviewed" / corrected["file"]).read_bytes() == case_store.images.read(corrected["image_sha256"])
    assert {r["cell_id"]: r["decision"] for r in rows} == {str(cells[0]["id"]): "accepted_at_signing",
                                                            str(cells[1]["id"]): "confirm",
                                                            str(cells[2]["id"]): "reclassify"}

    # An amendment after the export: exporting again into it moves the cell, leaving no copy under its old class.
    with case_store.transaction() as db:
        decide(db, ana, case_id, cells[2]["id"], "HYP", version=2, reason="second look")
    again = export_reviewed(case_store, tmp_path / "reviewed")
    assert again["n_removed_files"] == 1 and again["per_class"] == {"GBI": 1, "HYP": 1, "NEU": 1}
    assert sorted(p.parent.name for p in (tmp_path / "reviewed").rglob("*.png")) == ["GBI", "HYP", "NEU"]
    with case_store.transaction() as db:  # a cell a person could not classify: decided, never a training image
        decide(db, ana, case_id, cells[0]["id"], "unidentified", version=2, reason="smudged")
        assert get_case(db, case_id)["cells"][0]["label"] == "unidentified"
    later = export_reviewed(case_store, tmp_path / "reviewed")
    assert later["n_unidentified_left_out"] == 1 and later["per_class"] == {"GBI": 1, "HYP": 1}
    only_decided = export_reviewed(case_store, tmp_path / "decided", skip_accepted=True)
    assert only_decided["n_cells"] == 2 and only_decided["n_accepted_at_signing"] == 0
    with pytest.raises(Invalid, match="nor 'unidentified'"), case_store.transaction() as db:
        decide(db, ana, case_id, cells[1]["id"], "smudge", version=2, reason="x")
    with pytest.raises(Invalid, match="No signed case has cells to export"):
        export_reviewed(case_store, tmp_path / "later", signed_since=datetime.now(timezone.utc) + timedelta(hours=1))


def test_an_older_store_upgrades_itself_and_keeps_its_rows(store_url):
    folder, url = store_url
    old = open_store(folder, db_url=url, migrate_to="0001")
    assert schema_revision(old.engine) == "0001"
    assert "n_amendments" not in {c["name"] for c in inspect(old.engine).get_columns("cases")}
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, role, password_hash, active, created_at) "
                          "VALUES (1, 'ana', 'reviewer', 'x', true, '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO cases (id, sample_id, status, created_by, created_at, updated_at, signed_by) "
                          "VALUES (7, 'OLD-1', 'signed', 1, '2026-01-01', '2026-01-02', 1)"))
        for action in ("create", "sign", "amend", "amend"):
            conn.execute(text("INSERT INTO audit (at, user_name, action, case_id) VALUES ('2026-01-02', 'ana', "
                              f"'{action}', 7)"))
    old.close()
    store = open_store(folder, db_url=url)
    assert schema_revision(store.engine) == "0007"
    with store.transaction() as db:
        row = list_cases(db)[0]
    assert (row["sample_id"], row["status"], row["n_amendments"], row["signed_by"]) == ("OLD-1", "signed", 2, "ana")
    store.close()


def test_a_store_of_0004_moves_each_cells_screens_into_one_column(store_url):
    """Cells stored with the columns of 0004 (the out-of-domain score, the gate's call, the pallor) read back the same
    after 0005 moved them into ``screens``; a cell without screens keeps none."""
    folder, url = store_url
    old = open_store(folder, db_url=url, migrate_to="0004")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, role, password_hash, active, created_at) "
                          "VALUES (1, 'ana', 'reviewer', 'x', true, '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO cases (id, sample_id, status, created_by, created_at, updated_at, n_amendments) "
                          "VALUES (3, 'OLD-3', 'open', 1, '2026-01-01', '2026-01-02', 0)"))
        conn.execute(text("INSERT INTO models (id, fingerprint, run, backend, temperature, review_threshold, "
                          "critical_classes, classes, created_at) VALUES (1, 'f', 'tiny', 'torch', 1.0, 0.6, "
                          "'[\"GBI\"]', '[\"NEU\", \"GBI\"]', '2026-01-01')"))
        for i, (ood, score, cell_type, scope, pallor, pale) in enumerate([
                (True, 812.5, "eosinophil", True, 0.61, True), (False, 3.25, None, None, None, None),
                (None, None, None, None, None, None)]):
            conn.execute(text(
                "INSERT INTO cells (id, case_id, position, name, image_sha256, image_ext, model_id, predicted_label, "
                "probability, probabilities, needs_review, out_of_domain, ood_score, cell_type, out_of_scope, pallor, "
                f"pale, version) VALUES ({10 + i}, 3, {i}, 'c{i}.png', '{i:064d}', 'png', 1, 'NEU', 0.9, "
                "'{\"NEU\": 0.9, \"GBI\": 0.1}', false, :ood, :score, :cell_type, :scope, :pallor, :pale, 1)"),
                {"ood": ood, "score": score, "cell_type": cell_type, "scope": scope, "pallor": pallor, "pale": pale})
    old.close()
    store = open_store(folder, db_url=url)
    with store.transaction() as db:
        cells = get_case(db, 3)["cells"]
    fields = ("out_of_domain", "ood_score", "cell_type", "out_of_scope", "pallor", "pale")
    assert [tuple(c[f] for f in fields) for c in cells] == [(True, 812.5, "eosinophil", True, 0.61, True),
                                                            (False, 3.25, None, None, None, None),
                                                            (None, None, None, None, None, None)]
    assert cells[0]["screens"] == {"out_of_domain": {"value": 812.5, "flagged": True, "detail": None},
                                   "cell_type_gate": {"value": "eosinophil", "flagged": True, "detail": None},
                                   "pallor_screen": {"value": 0.61, "flagged": True, "detail": None}}
    assert cells[2]["screens"] == {}
    store.close()


def test_the_migrations_build_exactly_the_models_tables(case_store):
    with case_store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_migrating_twice_is_harmless(store_url):
    folder, url = store_url
    store = open_store(folder, db_url=url)
    migrate(store.engine)
    assert schema_revision(store.engine) == "0007"
    store.close()


def test_bad_database_urls_fail_in_one_sentence(tmp_path):
    from neunn.errors import NeunnError

    with pytest.raises(NeunnError, match="SQLite or PostgreSQL"):
        open_store(tmp_path, db_url="mysql://x@y/z")
    with pytest.raises(NeunnError, match="Cannot open the case database"):
        open_store(tmp_path, db_url="postgresql://nobody:wrong@127.0.0.1:1/none")
