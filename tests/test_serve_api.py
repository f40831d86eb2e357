"""Tests for the review station's HTTP API (neunn.serve): results, summary, alert, limits, zips, bad input, tokens."""

from __future__ import annotations

import base64
import copy
import io
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from broken_images import corrupt_png_bytes, jpeg_bytes, png_with_claimed_size
from fastapi.testclient import TestClient
from PIL import Image

import neunn.serve
from neunn.errors import NeunnError
from neunn.inference.heatmap import GradCam, explained_layer, overlay_png
from neunn.inference.predictor import Predictor
from neunn.serve import ServeLimits, create_app
from neunn.serve.archive import ZipRefused, expand_zip
from neunn.serve.results import OUT_OF_DOMAIN, normal_class, sample_summary
from neunn.serve.server import is_loopback, serve_run

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.from_run(trained_run)


@pytest.fixture(scope="module")
def client(predictor) -> TestClient:
    return TestClient(create_app(predictor, token=TOKEN), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def cells(phantom_dir) -> list[tuple[str, bytes]]:
    """Four real phantom PNGs as (name, bytes), from different classes."""
    paths = [min((phantom_dir / c).glob("*.png")) for c in ("NEU", "GBI", "BAC", "DB")]
    return [(p.name, p.read_bytes()) for p in paths]


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _post(client: TestClient, files: list[tuple[str, bytes]], query: str = "", **kwargs):
    return client.post(f"/api/v1/predict{query}", headers=AUTH, files=[("files", f) for f in files], **kwargs)


# ---- tokens, health, model card, docs, page -------------------------------------------------------------------------

def test_api_needs_the_token_but_health_and_page_do_not(client, cells):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = client.get("/api/v1/model", headers=headers)
        assert answer.status_code == 401 and "token" in answer.json()["error"]
        assert answer.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/v1/predict", files=[("files", cells[0])]).status_code == 401
    assert client.post("/api/v1/heatmap", files={"file": cells[0]}).status_code == 401
    assert client.get("/api/v1/model", headers=AUTH).status_code == 200


def test_without_a_token_the_api_is_open(predictor):
    assert TestClient(create_app(predictor)).get("/api/v1/model").status_code == 200


def test_model_card_describes_classes_calibration_and_limits(client, predictor):
    card = client.get("/api/v1/model", headers=AUTH).json()
    assert card["classes"] == predictor.classes
    assert card["display_order"] == ["NEU", "HYP", "CRY", "DB", "HJBLI", "GBI", "BAC"]
    assert card["arch"] == "resnet10t" and card["img_size"] == 48 and card["backend"] == "torch"
    assert card["critical_classes"] == ["BAC", "GBI"] and card["review_threshold"] == 0.6
    assert card["calibration"]["temperature"] == pytest.approx(predictor.meta["temperature"])
    assert card["calibration"]["ece_after"] == pytest.approx(predictor.meta["calibration"]["ece_after"])
    assert card["limits"]["max_files"] == ServeLimits().max_files
    assert card["class_names"]["GBI"] == "Green–blue inclusions of death"
    assert card["out_of_domain"]["method"] == "mahalanobis"
    assert card["out_of_domain"]["threshold"] == pytest.approx(predictor.ood.threshold)
    assert card["ood_warning"] == {"min_cells": 5, "min_share": 0.2}


def test_openapi_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/predict", "/api/v1/model", "/api/v1/heatmap", "/healthz"} <= set(paths)
    assert "multipart/form-data" in paths["/api/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_page_is_self_contained_and_locked_down(client):
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/app.js">' in page.text
    static = Path(neunn.serve.__file__).parent / "static"
    files = [p for p in static.iterdir() if p.suffix in (".html", ".js", ".css")]
    assert {"index.html", "app.js", "review.js", "tiles.js", "app.css"} <= {p.name for p in files}
    for path in files:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, f"{path.name} must not load anything from the network"
        assert client.get(f"/static/{path.name}").status_code == 200


# ---- predictions, summary, alert ------------------------------------------------------------------------------------

def test_predictions_match_the_shared_predictor(client, predictor, cells):
    answer = _post(client, cells)
    assert answer.status_code == 200
    body = answer.json()
    expected = predictor.predict_sources(cells)
    assert [r["name"] for r in body["results"]] == [name for name, _ in cells]
    for result, want in zip(body["results"], expected):
        assert result["status"] == 200 and result["error"] is None
        assert result["label"] == want.label
        assert result["probability"] == pytest.approx(want.probability, abs=1e-6)
        assert [t["label"] for t in result["top"]] == [c for c, _ in want.top]
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["needs_review"] == (want.probability < 0.6)
        assert want.out_of_domain is not None and result["out_of_domain"] == want.out_of_domain
        assert result["ood_score"] == pytest.approx(want.ood_score)
        assert result["display_label"] == (OUT_OF_DOMAIN if want.out_of_domain else "Unidentified — review"
                                           if result["needs_review"] else want.label)
        assert result["critical"] == (want.label in {"GBI", "BAC"})
    assert body["summary"]["n_cells"] == 4 and body["n_failed"] == 0


def test_review_threshold_sends_unsure_cells_to_review(trained_run, cells):
    strict = Predictor.from_run(trained_run, review_threshold=1.0)  # every calibrated probability is under 1
    body = _post(TestClient(create_app(strict, token=TOKEN)), cells).json()
    assert all(r["display_label"] == "Unidentified — review" for r in body["results"])
    assert body["summary"]["n_unidentified"] == 4 and body["summary"]["n_identified"] == 0


def test_critical_classes_come_from_configuration(trained_run, cells):
    alarmed = Predictor.from_run(trained_run)
    alarmed = Predictor.from_run(trained_run, critical=alarmed.classes)  # every class is critical
    body = _post(TestClient(create_app(alarmed, token=TOKEN)), cells).json()
    alert = body["summary"]["alert"]
    assert alert["critical"] and sum(alert["counts"].values()) == 4
    assert alert["message"].startswith("Critical finding: ") and "report at once" in alert["message"]
    calm = Predictor.from_run(trained_run, critical="none")
    assert _post(TestClient(create_app(calm, token=TOKEN)), cells).json()["summary"]["alert"]["critical"] is False


def test_sample_summary_counts_shares_and_alert():
    classes = ["NEU", "HYP", "GBI", "BAC"]
    cells = [("NEU", False), ("NEU", False), ("HYP", False), ("GBI", False), ("GBI", True), ("NEU", True)]
    summary = sample_summary(cells, classes=classes, critical_classes={"GBI", "BAC"})
    assert summary["n_cells"] == 6 and summary["n_unidentified"] == 2 and summary["n_identified"] == 4
    assert summary["counts"] == {"NEU": 2, "HYP": 1, "GBI": 1, "BAC": 0}
    assert summary["shares"] == {"NEU": 0.5, "HYP": 0.25, "GBI": 0.25, "BAC": 0.0}
    assert summary["abnormal_share"] == 0.5
    # The unsure GBI cell still raises the alert: a possible critical finding is never hidden in the review bin.
    assert summary["alert"] == {"critical": True, "counts": {"GBI": 2},
                                "message": "Critical finding: 2 cells GBI (Green–blue inclusions of death); "
                                           "confirm and report at once."}
    no_normal = sample_summary([("GBI", False)], classes=["GBI", "BAC"], critical_classes=[])
    assert normal_class(no_normal["counts"]) is None and no_normal["abnormal_share"] is None
    one_finding = sample_summary([("vacuolated", False), ("normal", False)], classes=["normal", "vacuolated"],
                                 critical_classes=["vacuolated"])
    assert one_finding["abnormal_share"] == 0.5 and one_finding["alert"]["counts"] == {"vacuolated": 1}
    assert no_normal["alert"]["critical"] is False
    empty = sample_summary([], classes=classes, critical_classes=["GBI"])
    assert empty["n_cells"] == 0 and empty["abnormal_share"] == 0.0 and empty["shares"]["NEU"] == 0.0
    assert summary["n_out_of_domain"] == 0 and summary["domain_warning"]["warning"] is False


def test_cells_outside_the_models_experience_have_their_own_bin_and_warn_the_sample():
    classes = ["NEU", "HYP", "GBI", "BAC"]
    # An unfamiliar cell goes to its own bin, even when also unsure; an unfamiliar GBI cell still raises the alert.
    cells = [("NEU", False, False), ("NEU", False, True), ("GBI", True, True), ("HYP", True, False)]
    summary = sample_summary(cells, classes=classes, critical_classes={"GBI"})
    assert summary["n_out_of_domain"] == 2 and summary["n_unidentified"] == 1 and summary["n_identified"] == 1
    assert summary["counts"] == {"NEU": 1, "HYP": 0, "GBI": 0, "BAC": 0} and summary["alert"]["counts"] == {"GBI": 1}
    assert summary["domain_warning"]["warning"] is False  # 2 cells: fewer than 5
    many = [("NEU", False, True)] * 5 + [("NEU", False, False)] * 20  # 5 of 25 = 20 %
    warning = sample_summary(many, classes=classes, critical_classes=[])["domain_warning"]
    assert warning["warning"] and warning["n"] == 5 and warning["share"] == 0.2
    assert warning["message"].startswith("5 of 25 cells (20%) are outside the model's experience")
    few = [("NEU", False, True)] * 5 + [("NEU", False, False)] * 21  # 5 of 26: under a fifth
    assert sample_summary(few, classes=classes, critical_classes=[])["domain_warning"]["warning"] is False


def test_the_api_flags_unfamiliar_cells(predictor, cells):
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    body = _post(TestClient(create_app(predictor)), [*cells, ("noise.png", buffer.getvalue())]).json()
    flagged = body["results"][-1]
    assert flagged["out_of_domain"] is True and flagged["display_label"] == OUT_OF_DOMAIN
    assert flagged["ood_score"] > predictor.ood.threshold
    assert body["summary"]["n_out_of_domain"] == sum(r["out_of_domain"] for r in body["results"])
    everything = copy.copy(predictor)  # a threshold under every score: the whole sample is unfamiliar
    everything.ood = replace(predictor.ood, threshold=-1.0)
    summary = _post(TestClient(create_app(everything)), [*cells, *cells]).json()["summary"]
    assert summary["n_out_of_domain"] == 8 and summary["n_identified"] == 0
    assert summary["domain_warning"]["warning"] and summary["domain_warning"]["share"] == 1.0


# ---- bad files: one error per file, the others succeed ---------------------------------------------------------------

def test_each_bad_file_gets_its_own_error_while_others_succeed(client, cells):
    files = [cells[0], ("notes.txt", b"not an image at all"), ("broken.png", corrupt_png_bytes()),
             ("empty.jpg", b""), ("bomb.png", png_with_claimed_size(50_000, 50_000)),
             ("cut.jpg", jpeg_bytes(64, 64)[:300]), cells[1]]
    body = _post(client, files).json()
    by_name = {r["name"]: r for r in body["results"]}
    assert [r["name"] for r in body["results"]] == [n for n, _ in files]
    assert by_name["notes.txt"]["status"] == 415 and by_name["notes.txt"]["error"] == "not an image file"
    assert by_name["broken.png"]["status"] == 422 and "corrupt PNG" in by_name["broken.png"]["error"]
    assert by_name["empty.jpg"]["status"] == 422 and by_name["empty.jpg"]["error"] == "empty file"
    assert by_name["bomb.png"]["status"] == 413 and "decompression bomb" in by_name["bomb.png"]["error"]
    assert by_name["cut.jpg"]["status"] == 422 and "JPEG" in by_name["cut.jpg"]["error"]
    assert by_name[cells[0][0]]["status"] == 200 and by_name[cells[1][0]]["status"] == 200
    assert body["n_failed"] == 5 and body["summary"]["n_cells"] == 2


def test_a_request_of_only_bad_files_answers_their_4xx(client):
    answer = _post(client, [("report.pdf", b"%PDF-1.4 not an image")])
    assert answer.status_code == 415
    assert answer.json()["results"][0] == {**answer.json()["results"][0], "name": "report.pdf", "status": 415}


def test_content_decides_not_the_extension(client, cells):
    png_named_zip = ("cell.zip", cells[0][1])
    zip_named_png = ("cell.png", _zip({"inner.png": cells[1][1]}))
    results = _post(client, [png_named_zip, zip_named_png]).json()["results"]
    assert [(r["name"], r["status"], r["in_zip"]) for r in results] == [
        ("cell.zip", 200, False), ("cell.png/inner.png", 200, True)]


def test_filenames_are_only_shown_never_used(client, cells):
    names = [b"../../../etc/passwd", b"a\x00b\x1b[31m\x7f.png", "C:\\Windows\\é.png".encode(), b"x" * 500, b""]
    body = b"".join(b'--xx\r\nContent-Disposition: form-data; name="files"; filename="' + name + b'"\r\n\r\n'
                    + cells[0][1] + b"\r\n" for name in names) + b"--xx--\r\n"
    answer = client.post("/api/v1/predict", content=body,
                         headers={**AUTH, "content-type": "multipart/form-data; boundary=xx"})
    results = answer.json()["results"]
    shown = [r["name"] for r in results]
    assert shown[:3] == ["../../../etc/passwd", "ab[31m.png", "é.png"]  # the parser drops a Windows folder
    assert len(shown[3]) == 200 and shown[4] == "file 5" and all(r["status"] == 200 for r in results)


def test_uploads_never_touch_the_disk(client, cells, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 1024 * 1024  # above Starlette's 1 MB spooling threshold
    assert _post(client, [("big.png", buffer.getvalue()), cells[0]]).status_code == 200


# ---- limits ---------------------------------------------------------------------------------------------------------

def test_limits_on_bytes_files_and_requests(predictor, cells):
    limits = ServeLimits(max_file_bytes=cells[0][1].__len__() + 10, max_files=3, max_request_bytes=200_000)
    small = TestClient(create_app(predictor, token=TOKEN, limits=limits))
    body = _post(small, [cells[0], ("large.jpg", jpeg_bytes(400, 400, seed=1))]).json()
    assert body["results"][0]["status"] == 200
    assert body["results"][1]["status"] == 413 and "too large" in body["results"][1]["error"]
    too_many = _post(small, cells[:4])
    assert too_many.status_code == 413 and "at most 3" in too_many.json()["error"]
    too_big = _post(small, [("huge.bin", b"\0" * 300_000)])
    assert too_big.status_code == 413 and "larger than" in too_big.json()["error"]
    with pytest.raises(NeunnError):
        ServeLimits(max_files=0)


def test_malformed_requests_are_refused_and_the_server_stays_up(client, cells):
    bad = [
        ({"content-type": "application/json"}, b'{"files": []}', 415),
        ({"content-type": "multipart/form-data"}, b"--x\r\n", 400),
        ({"content-type": "multipart/form-data; boundary=xx"}, b"garbage without any boundary", 400),
        ({"content-type": "multipart/form-data; boundary=xx"},
         b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nabc', 400),
        ({"content-type": "multipart/form-data; boundary=xx"}, b"--xx--\r\n", 400),
        ({"content-type": "multipart/form-data; boundary=xx"}, b"--xx\r\n" + b"X" * 70_000 + b"\r\n\r\n", 400),
    ]
    for headers, content, status in bad:
        answer = client.post("/api/v1/predict", headers={**AUTH, **headers}, content=content)
        assert answer.status_code == status, content[:40]
        assert isinstance(answer.json()["error"], str)
    assert client.post("/api/v1/predict?include_images=maybe", headers=AUTH, files=[("files", cells[0])]
                       ).status_code == 422
    assert client.get("/healthz").status_code == 200
    assert _post(client, cells[:1]).status_code == 200


# ---- zips -----------------------------------------------------------------------------------------------------------

def test_zip_of_a_sample_is_expanded_in_memory(client, cells):
    archive = _zip({"sample/": b"", "sample/c1.png": cells[0][1], "sample/c2.png": cells[1][1],
                    "__MACOSX/sample/._c1.png": b"\0\5\26\7", "sample/.DS_Store": b"junk",
                    "sample/readme.txt": b"hello"})
    body = _post(client, [("s1.zip", archive), cells[2]], query="?include_images=true").json()
    results = body["results"]
    assert [(r["name"], r["status"], r["upload"]) for r in results] == [
        ("s1.zip/sample/c1.png", 200, 0), ("s1.zip/sample/c2.png", 200, 0), ("s1.zip/sample/readme.txt", 415, 0),
        (cells[2][0], 200, 1)]
    assert base64.b64decode(results[0]["image"].split(",", 1)[1]) == cells[0][1]
    assert results[0]["image"].startswith("data:image/png;base64,") and "image" not in results[3]
    assert body["summary"]["n_cells"] == 3


def test_zip_bombs_and_hostile_zips_are_refused():
    bomb = _zip({"a.png": b"\0" * 5_000_000})  # deflates ~1000:1
    assert len(bomb) < 20_000
    with pytest.raises(ZipRefused, match="zip bomb") as refused:
        expand_zip("b.zip", bomb, max_cells=10, max_bytes=1_000_000, max_entry_bytes=10_000_000)
    assert refused.value.status == 413
    many = _zip({f"c{i}.png": b"x" for i in range(100)}, zipfile.ZIP_STORED)
    with pytest.raises(ZipRefused, match="more than the 10 cells"):
        expand_zip("m.zip", many, max_cells=10, max_bytes=10**6, max_entry_bytes=10**6)
    with pytest.raises(ZipRefused, match="not a readable zip"):
        expand_zip("t.zip", many[:-30], max_cells=200, max_bytes=10**6, max_entry_bytes=10**6)
    entry = expand_zip("e.zip", _zip({"big.png": b"\0" * 5000}), max_cells=5, max_bytes=10**6, max_entry_bytes=1000)
    assert entry[0].status == 413 and "too large" in entry[0].error


def test_zip_bomb_upload_names_the_zip(predictor, cells):
    limits = ServeLimits(max_unzipped_bytes=1_000_000)
    small = TestClient(create_app(predictor, token=TOKEN, limits=limits))
    body = _post(small, [("bomb.zip", _zip({"a.png": b"\0" * 3_000_000})), cells[0]]).json()
    assert body["results"][0]["name"] == "bomb.zip" and body["results"][0]["status"] == 413
    assert body["results"][1]["status"] == 200


# ---- heatmaps -------------------------------------------------------------------------------------------------------

def test_heatmap_is_a_transparent_overlay_of_the_image_size(client, predictor, cells):
    answer = client.post("/api/v1/heatmap", headers=AUTH, files={"file": cells[1]})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["x-neunn-target"] == predictor.predict_sources([cells[1]])[0].label
    overlay = Image.open(io.BytesIO(answer.content))
    assert overlay.mode == "RGBA" and overlay.size == Image.open(io.BytesIO(cells[1][1])).size
    for target in ("GBI", "NEU"):
        named = client.post(f"/api/v1/heatmap?target={target}", headers=AUTH, files={"file": cells[1]})
        assert named.headers["x-neunn-target"] == target
    unknown = client.post("/api/v1/heatmap?target=XYZ", headers=AUTH, files={"file": cells[1]})
    assert unknown.status_code == 422 and "XYZ" in unknown.json()["error"]
    text = client.post("/api/v1/heatmap", headers=AUTH, files={"file": ("a.txt", b"hello")})
    assert text.status_code == 415 and text.json()["name"] == "a.txt"
    archive = client.post("/api/v1/heatmap", headers=AUTH, files={"file": ("s.zip", _zip({"a.png": cells[0][1]}))})
    assert archive.status_code == 415


def test_gradcam_values_and_overlay_alpha(predictor, cells):
    cam = GradCam.for_predictor(predictor)
    assert cam.model is not predictor.engine.model  # a private copy: hooks never touch the serving model
    assert explained_layer(cam.model) is cam.model.layer4
    from neunn.data.image_io import load_rgb
    from neunn.data.preprocess import image_to_uint8

    pixels = image_to_uint8(load_rgb(cells[1][1]).image, predictor.img_size)
    heats = {c: cam.heat(pixels, target=c) for c in cam.classes}
    for heat in heats.values():  # scaled to a peak of 1, or all zero where nothing speaks for the class
        assert heat.shape == (48, 48) and heat.min() >= 0.0 and heat.max() in (0.0, pytest.approx(1.0))
    assert any(heat.max() > 0 for heat in heats.values())
    assert np.array_equal(heats["GBI"], cam.heat(pixels, target=cam.classes.index("GBI")))
    ramp = np.tile(np.linspace(0, 1, 20, dtype=np.float32), (10, 1))
    rgba = np.asarray(Image.open(io.BytesIO(overlay_png(ramp, size=(40, 20)))))
    assert rgba.shape == (20, 40, 4)
    assert rgba[:, 0, 3].max() == 0 and rgba[:, -1, 3].min() == round(0.6 * 255)


# ---- server -------------------------------------------------------------------------------------------------------

def test_only_loopback_may_serve_without_a_token(trained_run):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("example.org")
    with pytest.raises(NeunnError, match="token"):
        serve_run(trained_run, host="0.0.0.0", store=None)  # --ephemeral: nothing but the token guards the API
    with pytest.raises(NeunnError, match="empty"):
        serve_run(trained_run, token=" ", store=None)


def test_a_busy_port_is_one_sentence_before_any_model_loads(trained_run):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(NeunnError, match="Cannot listen on 127.0.0.1"):
            serve_run(trained_run, port=busy.getsockname()[1], store=None)


def test_a_stalled_upload_is_cut_off():
    import anyio
    from starlette.requests import Request

    from neunn.serve.uploads import UploadRefused, read_uploads

    async def stalled() -> dict:
        await anyio.sleep(30)
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/api/v1/predict", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=xx")]}
    with pytest.raises(UploadRefused) as refused:
        anyio.run(read_uploads, Request(scope, stalled), ServeLimits(max_upload_seconds=1))
    assert refused.value.status == 408 and "longer than 1 s" in str(refused.value)
