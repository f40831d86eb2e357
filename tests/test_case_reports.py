"""A case's printable report (PDF) and its results for a laboratory information system (FHIR R4, HL7 v2.5), over
HTTP: built from a case reviewed and signed through the API with the tiny model, then read back by independent
parsers (pypdf, fhir.resources, hl7apy)."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient

from neunn.cases.differential import case_differential
from neunn.cases.export import file_stem
from neunn.cases.lis import CODES, SAMPLE_SYSTEM, hl7_escape
from neunn.cases.users import add_user
from neunn.inference.predictor import Predictor
from neunn.serve import create_app

PASSWORDS = {"ana": "ana-password-1", "chief": "chief-password"}
SAMPLE = "S-2026/0412 ä"  # a slash, a space and a letter outside ASCII: the file names must be sanitised


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.from_run(trained_run)


@pytest.fixture
def lis_folder(tmp_path):
    return tmp_path / "lis"


@pytest.fixture
def app(predictor, case_store, lis_folder):
    with case_store.transaction() as db:
        for name, password in PASSWORDS.items():
            add_user(db, name, password, role="admin" if name == "chief" else "pathologist")
    return create_app(predictor, store=case_store, model_info={"run": "tiny"}, lis_targets=[lis_folder])


@pytest.fixture(scope="module")
def images(phantom_dir) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(phantom_dir.rglob("*.png"))[::7][:12]]


def login(app, name: str) -> dict[str, str]:
    answer = TestClient(app).post("/api/v1/token", data={"username": name, "password": PASSWORDS[name]})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def open_case(client: TestClient, who: dict[str, str], images, sample_id: str = SAMPLE) -> dict:
    case = client.post("/api/v1/cases", json={"sample_id": sample_id}, headers=who).json()
    upload = client.post(f"/api/v1/cases/{case['id']}/cells", files=[("files", item) for item in images], headers=who)
    assert upload.status_code == 200 and len(upload.json()["cells"]) == len(images), upload.text
    return client.get(f"/api/v1/cases/{case['id']}", headers=who).json()


def review_and_sign(client: TestClient, who: dict[str, str], case: dict) -> dict:
    """Decide every flagged cell (the first one as a critical GBI, the second as unidentified), then sign."""
    classes = case["models"][0]["classes"]
    for i, cell in enumerate(case["cells"]):
        label = "GBI" if i == 0 else "unidentified" if i == 1 else "NEU" if i == 2 else cell["predicted_label"]
        if i < 3 or cell["flagged"]:
            assert label in classes or label == "unidentified"
            answer = client.put(f"/api/v1/cases/{case['id']}/cells/{cell['id']}/decision",
                                json={"label": label, "version": cell["version"]}, headers=who)
            assert answer.status_code == 200, answer.text
    signed = client.post(f"/api/v1/cases/{case['id']}/signature", headers=who)
    assert signed.status_code == 200, signed.text
    return client.get(f"/api/v1/cases/{case['id']}", headers=who).json()


@pytest.fixture
def signed_case(app, images):
    client, ana = TestClient(app), login(app, "ana")
    case = review_and_sign(client, ana, open_case(client, ana, images))
    return client, ana, case, case_differential(case["cells"], case["models"])


def pdf_text(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def disposition_name(answer) -> str:
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=\"") and disposition.endswith("\"")
    name = disposition.split("filename=\"", 1)[1][:-1]
    assert all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in name), name
    return name


def test_file_stems_keep_letters_digits_and_dash_underscore_dot_only():
    assert file_stem("S-2026-0412") == "S-2026-0412"
    assert file_stem("a_b.c") == "a_b.c"
    unsafe = file_stem('S/1 "x"\\..')
    assert unsafe.startswith("S_1_x-") and len(unsafe.rsplit("-", 1)[1]) == 8
    assert file_stem("S/1") != file_stem("S_1") and file_stem("S/1") != file_stem("S:1")
    assert file_stem("../etc").startswith("etc-") and file_stem("測試").startswith("sample-")


def test_the_signed_report_has_the_sample_the_differential_findings_people_and_disclaimers(signed_case):
    client, ana, case, differential = signed_case
    answer = client.get(f"/api/v1/cases/{case['id']}/report.pdf", headers=ana)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-")
    name = disposition_name(answer)
    assert name == f"{file_stem(SAMPLE)}-report.pdf" and name.startswith("S-2026_0412-")
    pages = pdf_text(answer.content)
    text = "\n".join(pages)
    lines = text.splitlines()
    assert "S-2026/0412" in text  # the sample ID as it is (its ä is in Helvetica's Windows-1252 too)
    assert SAMPLE in text
    table = lines[lines.index("Differential"):lines.index("Findings")]  # pypdf gives each table cell a line
    for label, count in differential["counts"].items():  # each class's row: code, name, count, share
        at = table.index(label)
        assert table[at + 2:at + 4] == [str(count), f"{100 * differential['shares'][label]:.1f} %"], table[at:at + 4]
    for row, key in (("Identified", "n_identified"), ("Unidentified", "n_unidentified"),
                     ("Out of domain", "n_out_of_domain"), ("All cells", "n_cells")):
        at = table.index(row)
        assert str(differential[key]) in table[at + 1:at + 3], (row, table[at:at + 3])
    assert differential["n_unidentified"] >= 1 and differential["counts"]["GBI"] >= 1
    assert "Critical finding:" in text and "GBI \u2013 Green\u2013blue inclusions of death (critical)" in text
    findings = [line for line in lines if " (critical): " in line or line.endswith(" cell(s)")]
    assert findings[0].startswith("GBI") or findings[0].startswith("BAC")  # critical classes first
    model = case["models"][0]
    assert model["weights_sha256"] in text.replace("\n", "") and "tiny" in text and model["backend"] in text
    assert "Signed by ana" in text and "Who decided" in text
    assert "research software, not a diagnostic device" in text and "suggestion for a qualified person" in text
    assert "NOT SIGNED" not in text and "PRELIMINARY" not in text
    from neunn import __version__
    assert f"NeuNN {__version__}" in text


def test_the_report_shows_the_findings_cells_as_thumbnails(signed_case):
    from pypdf import PdfReader

    client, ana, case, differential = signed_case
    reader = PdfReader(io.BytesIO(client.get(f"/api/v1/cases/{case['id']}/report.pdf", headers=ana).content))
    n_images = sum(len(page.images) for page in reader.pages)
    normal = differential["normal_class"]
    expected = sum(1 for c in case["cells"] if c["label"] not in (normal, "unidentified"))
    assert n_images == expected >= 1
    first = next(image for page in reader.pages for image in page.images)
    assert max(first.image.size) <= 128


def test_an_open_case_gets_a_preliminary_report_on_every_page(app, phantom_dir):
    client, ana = TestClient(app), login(app, "ana")
    # enough cells for more than one page of thumbnails, each image once (a repeat is one cell, counted once)
    many = [(p.name, p.read_bytes()) for p in sorted(phantom_dir.rglob("*.png"))[:60]]
    case = open_case(client, ana, many, sample_id="S-open")
    for cell in case["cells"][:30]:  # make many findings so the report runs over pages
        client.put(f"/api/v1/cases/{case['id']}/cells/{cell['id']}/decision",
                   json={"label": "HYP", "version": cell["version"]}, headers=ana)
    answer = client.get(f"/api/v1/cases/{case['id']}/report.pdf", headers=ana)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    assert disposition_name(answer) == "S-open-report.pdf"
    pages = pdf_text(answer.content)
    assert len(pages) >= 2
    assert all("NOT SIGNED \u2014 preliminary" in page for page in pages)
    assert "S-open" in pages[0] and "no one has signed this case" in "\n".join(pages)
    for route in ("fhir", "hl7"):
        refused = client.get(f"/api/v1/cases/{case['id']}/{route}", headers=ana)
        assert refused.status_code == 409 and "not signed" in refused.json()["error"]


def test_a_case_without_cells_still_gets_a_preliminary_report(app):
    client, ana = TestClient(app), login(app, "ana")
    case = client.post("/api/v1/cases", json={"sample_id": "S-empty"}, headers=ana).json()
    answer = client.get(f"/api/v1/cases/{case['id']}/report.pdf", headers=ana)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    text = "\n".join(pdf_text(answer.content))
    assert "S-empty" in text and "No cell is classified yet." in text and "NOT SIGNED" in text


def test_the_fhir_bundle_parses_as_fhir_and_its_observations_are_the_differential(signed_case, lis_folder):
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.specimen import Specimen

    client, ana, case, differential = signed_case
    answer = client.get(f"/api/v1/cases/{case['id']}/fhir", headers=ana)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+json")
    assert disposition_name(answer) == f"{file_stem(SAMPLE)}.fhir.json"
    bundle = Bundle.model_validate_json(answer.content)
    assert bundle.type == "collection"
    resources = [entry.resource for entry in bundle.entry]
    reports = [r for r in resources if isinstance(r, DiagnosticReport)]
    observations = {r.code.coding[0].code: r for r in resources if isinstance(r, Observation)}
    specimen = next(r for r in resources if isinstance(r, Specimen))
    assert len(reports) == 1 and reports[0].status == "final"
    assert reports[0].code.coding[0].system == CODES and reports[0].category[0].coding[0].code == "HM"
    assert {(i.system, i.value) for i in specimen.identifier} == {(SAMPLE_SYSTEM, SAMPLE)}
    assert reports[0].resultsInterpreter[0].display == "ana"
    full_urls = {entry.fullUrl for entry in bundle.entry}
    assert {ref.reference for ref in reports[0].result} == {f"urn:uuid:{o.id}" for o in observations.values()}
    assert {ref.reference for ref in reports[0].result} <= full_urls
    for label, count in differential["counts"].items():
        observation = observations[f"count-{label}"]
        assert observation.valueQuantity.value == count and observation.valueQuantity.code == "{cells}"
        share = float(observation.component[0].valueQuantity.value)
        assert share == pytest.approx(100 * differential["shares"][label], abs=0.01)
    assert observations["cells-unidentified"].valueQuantity.value == differential["n_unidentified"]
    assert observations["cells-out-of-domain"].valueQuantity.value == differential["n_out_of_domain"]
    assert observations["cells-total"].valueQuantity.value == differential["n_cells"] == len(case["cells"])
    critical = {code: o for code, o in observations.items() if code.startswith("critical-")}
    assert set(critical) == {f"critical-{c}" for c in differential["alert"]["counts"]} and "critical-GBI" in critical
    assert critical["critical-GBI"].interpretation[0].coding[0].code == "AA"
    assert critical["critical-GBI"].valueQuantity.value == differential["alert"]["counts"]["GBI"]
    assert "not a diagnostic device" in reports[0].conclusion
    again = client.get(f"/api/v1/cases/{case['id']}/fhir", headers=ana).json()  # the same ids each time
    assert [e["fullUrl"] for e in again["entry"]] == [e.fullUrl for e in bundle.entry]
    written = json.loads((lis_folder / f"{file_stem(SAMPLE)}.fhir.json").read_text(encoding="utf-8"))
    assert Bundle.model_validate(written).entry[0].resource.status == "final"  # delivered on signing


def test_the_hl7_message_parses_as_an_oru_r01_and_its_obx_are_the_differential(signed_case, lis_folder):
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    client, ana, case, differential = signed_case
    answer = client.get(f"/api/v1/cases/{case['id']}/hl7", headers=ana)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert disposition_name(answer) == f"{file_stem(SAMPLE)}.hl7"
    text = answer.content.decode("utf-8")
    assert "\n" not in text and text.count("\r") >= 6
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and message.msh.msh_12.to_er7() == "2.5"
    result = message.oru_r01_patient_result
    assert result.oru_r01_patient.pid.pid_3.cx_1.to_er7() == hl7_escape(SAMPLE)
    order = result.oru_r01_order_observation
    assert order.obr.obr_25.to_er7() == "F" and order.obr.obr_3.ei_1.to_er7() == hl7_escape(SAMPLE)
    assert any("not a diagnostic device" in nte.nte_3.to_er7() for nte in order.nte)
    assert "model run tiny" in order.nte[0].nte_3.to_er7() and "Signed by ana" in order.nte[0].nte_3.to_er7()
    assert order.oru_r01_specimen.spm.spm_2.to_er7().split("^")[0] == hl7_escape(SAMPLE)
    values = {}
    for observation in order.oru_r01_observation:
        obx = observation.obx
        assert obx.obx_2.to_er7() == "NM" and obx.obx_11.to_er7() == "F"
        values[obx.obx_3.ce_1.to_er7()] = (int(obx.obx_5.to_er7()), obx.obx_8.to_er7())
    assert {label: values[f"count-{label}"][0] for label in differential["counts"]} == differential["counts"]
    assert values["cells-unidentified"][0] == differential["n_unidentified"]
    assert values["cells-total"][0] == differential["n_cells"]
    assert values["critical-GBI"] == (differential["alert"]["counts"]["GBI"], "AA")
    delivered = (lis_folder / f"{file_stem(SAMPLE)}.hl7").read_bytes().decode("utf-8")
    parse_message(delivered, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


def test_an_amendment_is_reported_as_amended_and_delivered_again(signed_case, lis_folder):
    from hl7apy.parser import parse_message

    client, ana, case, differential = signed_case
    cell = next(c for c in case["cells"] if c["final_label"] == "NEU")
    amended = client.put(f"/api/v1/cases/{case['id']}/cells/{cell['id']}/decision",
                         json={"label": "DB", "version": cell["version"], "reason": "second look"}, headers=ana)
    assert amended.status_code == 200, amended.text
    bundle = client.get(f"/api/v1/cases/{case['id']}/fhir", headers=ana).json()
    counts = {e["resource"]["code"]["coding"][0]["code"]: e["resource"].get("valueQuantity", {}).get("value")
              for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert bundle["entry"][0]["resource"]["status"] == "amended"
    assert counts["count-DB"] == differential["counts"]["DB"] + 1
    written = json.loads((lis_folder / f"{file_stem(SAMPLE)}.fhir.json").read_text(encoding="utf-8"))
    assert written["entry"][0]["resource"]["status"] == "amended"
    message = parse_message((lis_folder / f"{file_stem(SAMPLE)}.hl7").read_bytes().decode("utf-8"), find_groups=True)
    assert message.oru_r01_patient_result.oru_r01_order_observation.obr.obr_25.to_er7() == "C"


def test_exports_are_named_by_sample_id_and_carry_the_differential(signed_case):
    client, ana, case, differential = signed_case
    exported = client.get(f"/api/v1/cases/{case['id']}/export", headers=ana)
    assert disposition_name(exported) == f"{file_stem(SAMPLE)}.json"
    body = exported.json()
    assert body["differential"]["counts"] == differential["counts"]
    assert body["differential"]["n_unidentified"] == differential["n_unidentified"] >= 1
    assert sum(body["differential"]["counts"].values()) == body["differential"]["n_identified"]
    assert disposition_name(client.get(f"/api/v1/cases/{case['id']}/export?format=csv", headers=ana)) == \
        f"{file_stem(SAMPLE)}-cells.csv"
    assert disposition_name(client.get(f"/api/v1/cases/{case['id']}/audit?format=csv", headers=ana)) == \
        f"{file_stem(SAMPLE)}-audit.csv"


def test_unknown_cases_are_404_and_every_status_is_in_the_schema(app):
    client, ana = TestClient(app), login(app, "ana")
    for route in ("report.pdf", "fhir", "hl7"):
        answer = client.get(f"/api/v1/cases/999/{route}", headers=ana)
        assert answer.status_code == 404 and "no case 999" in answer.json()["error"]
        assert TestClient(app).get(f"/api/v1/cases/1/{route}").status_code == 401
    paths = app.openapi()["paths"]
    assert set(paths["/api/v1/cases/{case_id}/report.pdf"]["get"]["responses"]) >= {"200", "401", "404"}
    for route in ("fhir", "hl7"):
        assert set(paths[f"/api/v1/cases/{{case_id}}/{route}"]["get"]["responses"]) >= {"200", "401", "404", "409"}
    assert "application/pdf" in paths["/api/v1/cases/{case_id}/report.pdf"]["get"]["responses"]["200"]["content"]


def test_hl7_delimiters_in_a_sample_id_are_escaped_and_the_message_still_parses(app, images):
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    client, ana = TestClient(app), login(app, "ana")
    sample = "X|1^2&3~4\\5"
    case = review_and_sign(client, ana, open_case(client, ana, images[:4], sample_id=sample))
    assert hl7_escape(sample) == "X\\F\\1\\S\\2\\T\\3\\R\\4\\E\\5"
    text = client.get(f"/api/v1/cases/{case['id']}/hl7", headers=ana).content.decode("utf-8")
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()
    assert message.oru_r01_patient_result.oru_r01_patient.pid.pid_3.cx_1.to_er7() == hl7_escape(sample)
    order = message.oru_r01_patient_result.oru_r01_order_observation
    differential = case_differential(case["cells"], case["models"])
    # a count per class, then unidentified, out of domain, other cell type and total, then each critical finding
    assert len(order.oru_r01_observation) == len(differential["counts"]) + 4 + len(differential["alert"]["counts"])
    bundle = client.get(f"/api/v1/cases/{case['id']}/fhir", headers=ana).json()
    assert any(e["resource"].get("identifier", [{}])[0].get("value") == sample for e in bundle["entry"]
               if e["resource"]["resourceType"] == "Specimen")


def test_serve_refuses_a_lis_folder_without_a_case_store(trained_run, tmp_path, capsys):
    from neunn.cli import main

    assert main(["serve", str(trained_run), "--ephemeral", "--lis-folder", str(tmp_path / "lis")]) != 0
    assert "--lis-folder writes signed cases" in capsys.readouterr().err
    assert not (tmp_path / "lis").exists()
