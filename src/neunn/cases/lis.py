"""A signed case's results for a laboratory information system (LIS): an HL7 FHIR R4 ``Bundle`` (a
``DiagnosticReport`` with its ``Observation``s and the ``Specimen``) and an HL7 v2.5 ``ORU^R01`` message.

    bundle = fhir_bundle(report_facts(db, case_id))      # a dict: json.dumps it as application/fhir+json
    text = hl7_oru(report_facts(db, case_id))            # str, segments separated by "\\r"
    write_lis_files(folder, facts)                        # FOLDER/<sample>.fhir.json, FOLDER/<sample>.hl7, atomically

Both refuse (Conflict) a case that is not signed: a LIS takes results a person has signed, never a preliminary one.
Both are built here as plain data (no HL7 library at run time); the tests parse them with fhir.resources (FHIR R4B
models, the maintained ones for pydantic 2; the resources used here are the same in R4 and R4B) and hl7apy (strict
validation of the v2.5 ORU_R01 structure).

What they say, in both forms:

* one count per class of the differential (identified cells counted in it), with its share of the identified cells,
  and the unidentified, out-of-domain and total cells (see cases/differential.py), all in cells (UCUM ``{cells}``);
* one result per critical finding (a critical class with cells), flagged critical (FHIR interpretation ``AA``,
  HL7 v2 abnormal flag ``AA``), with the alert's sentence;
* the sample ID (the Specimen's identifier; in HL7 v2 the placeholder patient identifier PID-3, and the filler order
  number OBR-3 and SPM-2: NeuNN knows no patient, the LIS matches the sample to its order), the dates (opened,
  signed), the signer, the model (run, weights SHA-256, backend) and NeuNN's version, and the disclaimers;
* status final, or amended/corrected (FHIR ``amended``, HL7 v2 ``C``) once a signed case has been amended.

Codes: no LOINC code describes these counts (cells of each cytoplasmic finding of neutrophils, classified by a model
and reviewed), so they are local codes, which a laboratory maps to its own in the LIS:

* ``http://neunn.example/fhir/CodeSystem/report`` (HL7 v2 coding system ``99NEUNN``): ``neutrophil-morphology`` (the
  report), ``count-<class>`` (cells of a class, e.g. ``count-GBI``), ``critical-<class>`` (a critical finding),
  ``cells-unidentified``, ``cells-out-of-domain``, ``cells-other-type``, ``cells-total``, ``share-of-identified``
  (a count's component);
* ``http://neunn.example/fhir/sid/sample`` (the sample ID), ``.../sid/case`` (the case number), ``.../sid/user``
  (a reviewer's name at the station), ``.../sid/model-weights-sha256`` (the model);
* standard ones where they exist: the report's category ``HM`` (hematology, v2 table 0074), the observations'
  ``laboratory`` category, the interpretation ``AA`` (critical abnormal), UCUM units.

Resource ids are UUIDs derived from the case and its signature, so the same signed case (and its amendments) always
gives the same ids: a LIS that stores by id updates its copy rather than adding a second report.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neunn.atomic import write_atomic
from neunn.cases.errors import Conflict
from neunn.cases.report_facts import class_name

BASE = "http://neunn.example"
CODES = f"{BASE}/fhir/CodeSystem/report"
SAMPLE_SYSTEM = f"{BASE}/fhir/sid/sample"
CASE_SYSTEM = f"{BASE}/fhir/sid/case"
USER_SYSTEM = f"{BASE}/fhir/sid/user"
MODEL_SYSTEM = f"{BASE}/fhir/sid/model-weights-sha256"
UCUM = "http://unitsofmeasure.org"
HL7_CODES = "99NEUNN"  # a local coding system in HL7 v2 (table 0396: 99zzz), the same codes as CODES
REPORT_CODE = ("neutrophil-morphology", "Neutrophil cytoplasmic morphology (NeuNN image classification, reviewed)")
FHIR_MEDIA_TYPE = "application/fhir+json"


def _require_signed(facts: dict[str, Any]) -> None:
    if not facts["signed"]:
        raise Conflict(f"Case {facts['case']['sample_id']!r} is not signed; results go to the laboratory information "
                       "system once a reviewer signs the case (its PDF report can be printed as preliminary).")


def results(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The results both forms report, in order: [{"code", "display", "value", "share"?, "critical", "note"?}]."""
    d = facts["differential"]
    rows = [{"code": f"count-{c}", "display": f"{class_name(c)}, cells", "value": d["counts"][c],
             "share": d["shares"][c], "critical": False} for c in d["classes"]]
    rows += [{"code": "cells-unidentified", "display": "Unidentified cells (not classifiable)",
              "value": d["n_unidentified"], "critical": False},
             {"code": "cells-out-of-domain", "display": "Cells outside the model's experience",
              "value": d["n_out_of_domain"], "critical": False},
             {"code": "cells-other-type", "display": "Other cell types (not neutrophils)",
              "value": d["n_other_cell_type"], "critical": False},
             {"code": "cells-total", "display": "Cells reviewed", "value": d["n_cells"], "critical": False}]
    rows += [{"code": f"critical-{c}", "display": f"Critical finding: {class_name(c)}", "value": n, "critical": True,
              "note": d["alert"]["message"]} for c, n in d["alert"]["counts"].items()]
    return rows


def _model_line(facts: dict[str, Any]) -> str:
    return "; ".join(f"model run {m['run']} ({m['arch'] or '?'}, backend {m['backend']}, weights SHA-256 "
                     f"{m['weights_sha256'] or 'unknown'})" for m in facts["models"])


def provenance(facts: dict[str, Any]) -> str:
    """One paragraph: who classified (NeuNN, the model), who decided the cells, who signed and when."""
    case = facts["case"]
    decided = ", ".join(f"{r['name']} ({r['n_cells']})" for r in facts["deciders"]) or "nobody"
    amended = f"; amended {case['n_amendments']} time(s) since, last at {case['updated_at']}" if case[
        "n_amendments"] else ""
    submitted = (f"Submitted for verification by {case['submitted_by']} at {case['submitted_at']}. "
                 if case.get("submitted_by") else "")
    calls = "".join(f" Critical finding communicated to {c['recipient']} ({c['method'].replace('_', ' ')}) at "
                    f"{c['communicated_at']}, recorded by {c['recorded_by']}." for c in facts.get("critical_calls", ()))
    return (f"Classified by NeuNN {facts['neunn_version']}, {_model_line(facts)}. Cells decided by {decided}. "
            f"{submitted}Signed by {case['signed_by']} at {case['signed_at']}{amended}.{calls}")


def _ids(facts: dict[str, Any]) -> Callable[[str], str]:
    case = facts["case"]
    root = f"{BASE}/case/{case['id']}/{case['sample_id']}/{case['signed_at']}"
    return lambda part: f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{root}/{part}')}"


def _concept(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": CODES, "code": code, "display": display}], "text": display}


def _cells(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "cells", "system": UCUM, "code": "{cells}"}


def fhir_bundle(facts: dict[str, Any]) -> dict[str, Any]:
    """The signed case as a FHIR R4 ``Bundle`` (type collection): DiagnosticReport, Specimen, Observations."""
    _require_signed(facts)
    case, ids = facts["case"], _ids(facts)
    amended = case["n_amendments"] > 0
    status = "amended" if amended else "final"
    issued = case["updated_at"] if amended else case["signed_at"]
    signer = {"identifier": {"system": USER_SYSTEM, "value": case["signed_by"]}, "display": case["signed_by"]}
    device = {"display": f"NeuNN {facts['neunn_version']}: {_model_line(facts)}"}
    specimen = {"resourceType": "Specimen", "id": ids("specimen").removeprefix("urn:uuid:"),
                "identifier": [{"system": SAMPLE_SYSTEM, "value": case["sample_id"]}],
                "accessionIdentifier": {"system": SAMPLE_SYSTEM, "value": case["sample_id"]},
                "type": {"text": "Peripheral blood smear (single-cell images of neutrophils)"},
                "receivedTime": case["created_at"]}
    observations = []
    for row in results(facts):
        observation: dict[str, Any] = {
            "resourceType": "Observation", "id": ids(f"observation/{row['code']}").removeprefix("urn:uuid:"),
            "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory", "display": "Laboratory"}]}],
            "code": _concept(row["code"], row["display"]), "specimen": {"reference": ids("specimen")},
            "effectiveDateTime": case["created_at"], "issued": issued, "performer": [signer], "device": device,
            "valueQuantity": _cells(row["value"])}
        if "share" in row:
            observation["component"] = [{"code": _concept("share-of-identified", "Share of the identified cells"),
                                         "valueQuantity": {"value": round(100 * row["share"], 2), "unit": "%",
                                                           "system": UCUM, "code": "%"}}]
        if row["critical"]:
            observation["interpretation"] = [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "AA",
                "display": "Critical abnormal"}]}]
            observation["note"] = [{"text": row["note"]}]
        observations.append(observation)
    d = facts["differential"]
    conclusion = [d["alert"]["message"] or "No critical finding."]
    conclusion += [f"{c}: {d['counts'][c]}" for c in d["classes"]]
    report = {"resourceType": "DiagnosticReport", "id": ids("report").removeprefix("urn:uuid:"),
              "identifier": [{"system": CASE_SYSTEM, "value": str(case["id"])},
                             {"system": SAMPLE_SYSTEM, "value": case["sample_id"]}],
              "status": status,
              "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM",
                                        "display": "Hematology"}]}],
              "code": _concept(*REPORT_CODE), "effectiveDateTime": case["created_at"], "issued": issued,
              "performer": [{"display": f"NeuNN {facts['neunn_version']} review station"}],
              "resultsInterpreter": [signer], "specimen": [{"reference": ids("specimen")}],
              "result": [{"reference": f"urn:uuid:{o['id']}", "display": o["code"]["text"]} for o in observations],
              "conclusion": " ".join([conclusion[0], "Counts:", "; ".join(conclusion[1:]) + ".", provenance(facts),
                                      *facts["disclaimers"]])}
    resources = [report, specimen, *observations]
    return {"resourceType": "Bundle", "id": ids("bundle").removeprefix("urn:uuid:"), "type": "collection",
            "identifier": {"system": CASE_SYSTEM, "value": f"{case['id']}-{case['n_amendments']}"},
            "timestamp": facts["made_at"],
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}


# ---- HL7 v2.5 -------------------------------------------------------------------------------------------------------

def hl7_escape(text: Any) -> str:
    """A field's text with HL7 v2's delimiters escaped (\\F\\ | \\S\\ ^ \\T\\ & \\R\\ ~ \\E\\ \\), line breaks as
    \\.br\\."""
    text = "" if text is None else str(text)
    for raw, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        text = text.replace(raw, escaped)
    return text.replace("\r\n", "\\.br\\").replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def hl7_time(stamp: str | None) -> str:
    """'2026-04-12T10:30:05.123Z' → '20260412103005+0000' (HL7 v2 DTM, UTC)."""
    if not stamp:
        return ""
    digits = stamp[:19].replace("-", "").replace(":", "").replace("T", "")
    return f"{digits}+0000"


def _segment(name: str, *fields: str) -> str:
    return "|".join((name, *fields)).rstrip("|")


def hl7_oru(facts: dict[str, Any], *, control_id: str | None = None, sending_facility: str = "",
            receiving_application: str = "LIS", receiving_facility: str = "") -> str:
    """The signed case as an HL7 v2.5 ORU^R01 message: MSH, PID (the sample ID as placeholder identifier), OBR, NTE
    (provenance, disclaimers), one OBX per result (numeric, in cells), SPM; segments separated by carriage returns."""
    _require_signed(facts)
    case = facts["case"]
    e = hl7_escape
    status = "C" if case["n_amendments"] else "F"
    signed, opened = hl7_time(case["signed_at"]), hl7_time(case["created_at"])
    reported = hl7_time(case["updated_at"] if case["n_amendments"] else case["signed_at"])
    sample = e(case["sample_id"])
    signer = e(case["signed_by"])
    control = control_id or uuid.uuid4().hex[:20]
    segments = [
        # MSH-1 is the field separator itself, so MSH's fields are numbered from the encoding characters (MSH-2)
        _segment("MSH", "^~\\&", "NEUNN", e(sending_facility), e(receiving_application), e(receiving_facility),
                 hl7_time(facts["made_at"]), "", "ORU^R01^ORU_R01", control, "P", "2.5", "", "", "", "", "", "",
                 "UNICODE UTF-8"),
        # PID-5 (required) has no name to give: an empty name of type U (unspecified); the LIS has the patient
        _segment("PID", "1", "", f"{sample}^^^NEUNN^SID", "", "^^^^^^U"),
        _segment("OBR", "1", "", f"{sample}^NEUNN", f"{REPORT_CODE[0]}^{e(REPORT_CODE[1])}^{HL7_CODES}", "", "",
                 opened, *[""] * 14, reported, "", "HM", status, *[""] * 6, signer),
    ]
    notes = [provenance(facts), *facts["disclaimers"]]
    segments += [_segment("NTE", str(i), "L", e(text)) for i, text in enumerate(notes, 1)]
    for i, row in enumerate(results(facts), 1):
        segments.append(_segment(
            "OBX", str(i), "NM", f"{e(row['code'])}^{e(row['display'])}^{HL7_CODES}", "", str(row["value"]),
            "{cells}^cells^UCUM", "", "AA" if row["critical"] else "", "", "", status, "", "", signed, "", signer))
        if row.get("note"):
            segments.append(_segment("NTE", "1", "L", e(row["note"])))
    segments.append(_segment("SPM", "1", f"{sample}^NEUNN", "", "BLD^Whole blood^HL70487"))
    return "\r".join(segments) + "\r"


def lis_file_names(facts: dict[str, Any]) -> tuple[str, str]:
    return f"{facts['file_stem']}.fhir.json", f"{facts['file_stem']}.hl7"


def write_lis_files(folder: Path, facts: dict[str, Any]) -> list[Path]:
    """Write the signed case's FHIR bundle and HL7 v2 message into ``folder``, each atomically (a LIS that watches the
    folder never reads half a file; a later write, after an amendment, replaces them). Returns the two paths."""
    fhir_name, hl7_name = lis_file_names(facts)
    bundle, message = json.dumps(fhir_bundle(facts), ensure_ascii=False, indent=1), hl7_oru(facts)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / fhir_name, folder / hl7_name]
    for path, text in zip(paths, (bundle, message)):  # UTF-8 (MSH-18 says so), whatever the locale
        write_atomic(path, lambda tmp, data=text.encode("utf-8"): tmp.write_bytes(data))
    return paths
