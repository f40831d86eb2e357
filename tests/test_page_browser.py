"""End-to-end test of the review page in headless Chromium: upload cells, see tiles and alert, reclassify, export.

Playwright for Python drives the system's Chromium (Debian's ``chromium`` at /usr/bin/chromium, never a downloaded
one); the test skips cleanly where that browser is absent. The server is uvicorn on a free loopback port.

    NEUNN_PAGE_RUN=runs/demo NEUNN_SCREENSHOT=docs/img/review_page.png pytest tests/test_page_browser.py

runs it against another trained run with that run's own configuration and saves a screenshot of the reviewed page.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from neunn.inference.predictor import Predictor
from neunn.serve import create_app
from neunn.serve.results import sample_summary
from neunn.serve.server import run_model_info

from conftest import CHROMIUM, CHROMIUM_ARGS, serving

TOKEN = "page-token"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


def _sample(data_dir: Path, n: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """``n`` cells, classes taken in turn, as (name, bytes); the last two are also zipped as one sample."""
    classes = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    picked = [sorted((data_dir / classes[i % len(classes)]).iterdir())[i // len(classes)] for i in range(n)]
    cells = [(p.name, p.read_bytes()) for p in picked]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sample/", b"")
        for name, data in cells[-2:]:
            archive.writestr(f"sample/{name}", data)
        archive.writestr("__MACOSX/sample/._x", b"junk")
    return cells, buffer.getvalue()


def _page_summary(page) -> dict:
    """What the page's summary table shows: cells per class, unidentified and out-of-domain counts, and whether the
    sample's out-of-domain warning is up."""
    rows = page.locator("#summary tbody tr")
    counts = {}
    for i in range(rows.count()):
        label = rows.nth(i).locator(".code").inner_text()
        counts[label] = int(rows.nth(i).locator("td").first.inner_text())
    return {"counts": counts, "n_unidentified": int(page.locator("#sum-unidentified").inner_text()),
            "n_out_of_domain": int(page.locator("#sum-ood").inner_text()),
            "warning": page.locator("#domain-warning").is_visible()}


def _expected(cells: list[tuple[str | None, bool, bool]], predictor: Predictor) -> dict:
    summary = sample_summary(cells, classes=predictor.classes, critical_classes=predictor.policy.critical_classes)
    return {"counts": summary["counts"], "n_unidentified": summary["n_unidentified"],
            "n_out_of_domain": summary["n_out_of_domain"], "warning": summary["domain_warning"]["warning"],
            "alert": summary["alert"], "domain_warning": summary["domain_warning"]}


def _shown(expected: dict) -> dict:
    return {k: expected[k] for k in ("counts", "n_unidentified", "n_out_of_domain", "warning")}


def test_review_page_end_to_end(trained_run, phantom_dir):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    run = Path(os.environ.get("NEUNN_PAGE_RUN", trained_run))
    predictor = Predictor.from_run(run)
    data_dir = Path(json.loads((run / "run.json").read_text())["data_dir"]) if "NEUNN_PAGE_RUN" in os.environ \
        else phantom_dir
    cells, archive = _sample(data_dir, int(os.environ.get("NEUNN_PAGE_CELLS", "8")))
    loose = len(cells) - 2  # loose files, then notes.txt, then the zip's two cells
    predictions = predictor.predict_sources(cells)
    if "NEUNN_PAGE_RUN" not in os.environ:  # make the alert certain whatever the tiny model predicts
        predictor.policy = predictor.policy.overridden(review_threshold=0.0, critical=[predictions[0].label],
                                                       classes=predictor.classes)
        # ... and five cells outside the model's experience (the first, critical one among them): the sample warns
        scores = sorted((p.ood_score for p in predictions[1:]), reverse=True)
        predictor.ood = replace(predictor.ood, threshold=min(scores[3], predictions[0].ood_score) - 1e-9)
        predictions = predictor.predict_sources(cells)
        assert sum(p.out_of_domain for p in predictions) >= 5 and predictions[0].out_of_domain
    calls = [(p.label, predictor.policy.needs_review(p.probability), bool(p.out_of_domain)) for p in predictions]
    uploads = [{"name": n, "mimeType": "image/png", "buffer": d} for n, d in cells[:loose]]
    uploads += [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a cell"},
                {"name": "sample.zip", "mimeType": "application/zip", "buffer": archive}]
    problems: list[str] = []

    app = create_app(predictor, token=TOKEN, model_info=run_model_info(run))
    with serving(app) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(f"{url}/#token={TOKEN}")
        expect(page.locator("#model-line")).to_contain_text("classes")  # waits, within the page's own CSP
        assert "token" not in page.url  # the token left the address bar

        page.set_input_files("#file-input", uploads)
        expect(page.locator(".tile")).to_have_count(len(cells) + 1, timeout=30_000)
        names = page.locator(".tile .name").all_inner_texts()
        zipped_names = [f"sample.zip/sample/{n}" for n, _ in cells[loose:]]
        assert names == [n for n, _ in cells[:loose]] + ["notes.txt"] + zipped_names
        unreadable = page.locator(".tile.error")
        assert unreadable.count() == 1 and "not an image file" in unreadable.inner_text()
        assert page.locator(".tile:not(.error) img.cell[src^='blob:']").count() == len(cells)  # zipped ones too

        expected = _expected(calls, predictor)
        assert _page_summary(page) == _shown(expected)
        assert page.locator("#alert").is_visible() == expected["alert"]["critical"]
        if expected["alert"]["critical"]:
            assert page.locator("#alert-text").inner_text() == expected["alert"]["message"].removeprefix(
                "Critical finding: ")
        if expected["warning"]:
            assert page.locator("#domain-warning-text").inner_text() == expected["domain_warning"]["message"]
        n_ood = sum(ood for _, _, ood in calls)
        page.click(".filter[data-filter='ood']")
        assert page.locator(".tile:not([hidden])").count() == n_ood
        for i in range(n_ood):
            badge = page.locator(".tile:not([hidden]) .badge").nth(i).inner_text()
            assert badge == "Outside the model's experience" or "outside the model's experience" in badge
        if "NEUNN_PAGE_RUN" not in os.environ:  # the critical cell is unfamiliar too, and still raises the alert
            assert page.locator(".tile.ood.critical .badge").first.inner_text().startswith("⚠ Possible")
        page.click(".filter[data-filter='all']")

        # Reclassify a critical cell (or the first) into a class that is not critical.
        index = next((i for i, (label, *_) in enumerate(calls) if label in predictor.policy.critical_classes), 0)
        target = next(c for c in ["NEU", *predictor.classes] if c in predictor.classes and c != calls[index][0]
                      and c not in predictor.policy.critical_classes)
        tile = page.locator(".tile:not(.error)").nth(index)
        tile.locator("select.reclassify").select_option(target)
        assert "corrected" in tile.locator(".badge").inner_text()
        calls[index] = (target, False, False)
        expected = _expected(calls, predictor)
        assert _page_summary(page) == _shown(expected)
        assert page.locator("#alert").is_visible() == expected["alert"]["critical"]

        # The heatmap of a zipped cell: fetched once, laid over the image.
        zipped = page.locator(".tile:not(.error)").nth(len(cells) - 1)
        zipped.locator("button.heat").click()
        expect(zipped.locator("img.overlay")).to_have_attribute("src", re.compile("^blob:"))
        expect(zipped.locator("img.overlay")).to_be_visible()
        assert zipped.locator("button.heat").get_attribute("aria-pressed") == "true"

        # Keyboard: 0 puts another cell in the review bin.
        keyed = 2 if index != 2 else 3  # a loose cell other than the reclassified one
        page.locator(".tile:not(.error)").nth(keyed).focus()
        page.keyboard.press("0")
        calls[keyed] = (None, True, False)
        assert _page_summary(page)["n_unidentified"] == _expected(calls, predictor)["n_unidentified"]

        page.fill("#sample-id", "smear 42/A")
        with page.expect_download() as download:
            page.click("#export-csv")
        assert download.value.suggested_filename.startswith("neunn_smear_42_A_")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        with page.expect_download() as download_json:
            page.click("#export-json")
        exported = json.loads(Path(download_json.value.path()).read_text())
        if os.environ.get("NEUNN_SCREENSHOT"):
            page.click(".filter[data-filter='all']")
            page.locator(".tile:not(.error) button.heat").nth(1).click()
            expect(page.locator(".tile:not(.error) img.overlay").nth(1)).to_be_visible()
            page.locator(".tile").first.scroll_into_view_if_needed()
            page.screenshot(path=os.environ["NEUNN_SCREENSHOT"])
        browser.close()

    assert not problems, problems
    assert len(rows) == len(cells) + 1 and rows[loose]["status"] == "unreadable"
    assert rows[loose]["error"] == "not an image file"
    corrected = rows[index if index < loose else index + 1]
    assert corrected["corrected"] == "yes" and corrected["final_class"] == target and corrected["reviewed"] == "yes"
    assert corrected["model_class"] == predictions[index].label and corrected["sample_id"] == "smear 42/A"
    assert rows[keyed]["final_class"] == "Unidentified" and rows[keyed]["reviewed"] == "yes"
    final = _expected(calls, predictor)
    assert exported["summary"]["counts"] == final["counts"] and exported["summary"]["n_failed"] == 1
    assert exported["summary"]["alert"]["critical"] == final["alert"]["critical"]
    assert exported["summary"]["n_out_of_domain"] == final["n_out_of_domain"]
    loose_rows = rows[:loose] + rows[loose + 1:]
    assert [r["model_out_of_domain"] for r in loose_rows] == ["yes" if p.out_of_domain else "no" for p in predictions]
    assert exported["sample_id"] == "smear 42/A" and len(exported["cells"]) == len(cells) + 1
