"""End-to-end test of the case pages in headless Chromium: log in, open a case, upload cells, decide, reload, sign,
amend; another reviewer sees the signed case and its audit trail; two reviewers deciding the same cell get a conflict.

Playwright for Python drives the system's Chromium (as tests/test_page_browser.py: /usr/bin/chromium, never a
downloaded one; skipped cleanly where it is absent). One uvicorn server on a loopback port and one browser serve the
whole module; each reviewer has a browser context of their own (their own cookie).

    NEUNN_SCREENSHOT_CASES=docs/img/case_review.png pytest tests/test_cases_browser.py

also saves a screenshot of the case view.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from neunn.cases import open_store
from neunn.cases.casework import audit_trail, get_case
from neunn.cases.users import add_user
from neunn.inference.predictor import Predictor
from neunn.serve import create_app

from conftest import CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

ALICE, BOB = ("alice", "alice-password"), ("bob", "bob-password-1")
N_CELLS = 6
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


class Console:
    """Everything a page reports that would mean a broken page: JS errors, CSP violations, failed loads (only the
    statuses a test expects, which Chromium logs for every 4xx answer, are allowed)."""

    def __init__(self, page, allowed: tuple[int, ...] = ()) -> None:
        self.problems: list[str] = []
        self.allowed = allowed
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        if message.type not in ("error", "warning"):
            return
        failed = FAILED_LOAD.search(message.text)
        if failed and int(failed.group(1)) in self.allowed:
            return
        self.problems.append(f"{message.type}: {message.text}")

    def check(self) -> None:
        assert not self.problems, self.problems


def _cells(data_dir: Path) -> list[tuple[str, bytes]]:
    classes = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    picked = [sorted((data_dir / classes[i % len(classes)]).iterdir())[i // len(classes)] for i in range(N_CELLS)]
    return [(p.name, p.read_bytes()) for p in picked]


@pytest.fixture(scope="module")
def station(trained_run, phantom_dir, tmp_path_factory):
    """The station with a case store, two reviewers and a policy that flags some cells: the URL, store, the sample's
    cells and the browser."""
    # NEUNN_PAGE_RUN / NEUNN_PAGE_DATA: another run and its data (docs/img/case_page.png is made with the demo run).
    predictor = Predictor.from_run(os.environ.get("NEUNN_PAGE_RUN") or trained_run)
    cells = _cells(Path(os.environ.get("NEUNN_PAGE_DATA") or phantom_dir))
    predictions = predictor.predict_sources(cells)
    # The first cell's class is critical (so at least one cell is flagged) and the least confident of the others
    # goes to the review bin, whatever the tiny model predicts.
    lowest = sorted(p.probability for p in predictions[1:])
    threshold = min(1.0, (lowest[0] + lowest[1]) / 2) if lowest[0] < lowest[1] else None
    predictor.policy = predictor.policy.overridden(review_threshold=threshold, critical=[predictions[0].label],
                                                   classes=predictor.classes)
    store = open_store(tmp_path_factory.mktemp("cases") / "store")
    with store.transaction() as db:
        add_user(db, *ALICE, role="pathologist")
        add_user(db, *BOB, role="pathologist")
    app = create_app(predictor, store=store, model_info={"run": "tiny"})
    with serving(app) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield {"url": url, "store": store, "cells": cells, "predictor": predictor, "browser": browser}
        browser.close()


def _log_in(browser, url: str, who: tuple[str, str], next_path: str = "/", allowed: tuple[int, ...] = ()):
    """A new context (its own cookie) logged in through the login page, on ``next_path``: (context, page, console)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    console = Console(page, allowed)
    page.goto(f"{url}/login" + ("" if next_path == "/" else f"?next={next_path.replace('#', '%23')}"))
    page.fill("#login-name", who[0])
    page.fill("#login-password", who[1])
    page.click("#login-submit")
    page.wait_for_url(f"{url}{next_path}")
    expect(page.locator("#user-name")).to_have_text(who[0])
    return context, page, console


def _tiles(page) -> dict[str, tuple]:
    """Each tile's cell id → (label shown, decided, what its save line says)."""
    tiles = page.locator("#grid .tile")
    return {tiles.nth(i).get_attribute("data-cell-id"): (
        tiles.nth(i).get_attribute("data-label"), tiles.nth(i).get_attribute("data-decided"),
        tiles.nth(i).locator(".save-state").get_attribute("data-state"),
        tiles.nth(i).locator("select.reclassify").input_value()) for i in range(tiles.count())}


def _stored(store, case_id: int) -> dict:
    with store.transaction() as db:
        return get_case(db, case_id)


def _wait_saved(tile) -> None:
    expect(tile.locator(".save-state")).to_have_attribute("data-state", "saved")


def test_anonymous_visitor_sees_the_login_page_only(station):
    url, browser = station["url"], station["browser"]
    assert httpx.get(f"{url}/api/v1/cases").status_code == 401
    assert "error" in httpx.get(f"{url}/api/v1/cases/1").json()
    context = browser.new_context()
    page = context.new_page()
    console = Console(page, allowed=(401,))  # the page asks who is logged in (401), then a wrong password (401)
    page.goto(f"{url}/#case=1")
    page.wait_for_url(re.compile(r"/login\?next=%2F%23case%3D1$"))
    expect(page.locator("#login-form")).to_be_visible()
    assert page.locator("#case-view").count() == 0 and "S-2026" not in page.content()
    page.fill("#login-name", ALICE[0])
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("Wrong user name or password")
    assert "/login" in page.url
    # After logging in, the page goes back only to a path of this site.
    nexts = ["/#case=3", "//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
             "/api/v1/cases", None]
    gone = page.evaluate("(ns) => import('/static/cases-api.js').then((m) => ns.map((n) => m.safeNext(n)))", nexts)
    assert gone == ["/#case=3", "/", "/", "/", "/", "/", "/"]
    context.close()
    console.check()


def test_review_reload_sign_and_audit(station):
    url, store, browser, predictor = station["url"], station["store"], station["browser"], station["predictor"]
    critical = set(predictor.policy.critical_classes)
    context, page, console = _log_in(browser, url, ALICE)
    expect(page.locator("#whoami")).to_contain_text("pathologist")
    expect(page.locator("#model-line")).to_contain_text("critical")

    # A new case from the worklist; the address names it, so a reload reopens it.
    page.fill("#new-sample-id", "S-2026-0001")
    page.click("#new-case-submit")
    page.wait_for_url(re.compile(r"#case=\d+$"))
    case_id = int(page.url.rsplit("=", 1)[1])
    expect(page.locator("#case-sample")).to_have_text("S-2026-0001")
    expect(page.locator("#case-status")).to_have_text("To review")

    uploads = [{"name": n, "mimeType": "image/png", "buffer": d} for n, d in station["cells"]]
    uploads.append({"name": "corrupt.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\nbroken"})
    page.set_input_files("#file-input", uploads)
    expect(page.locator("#grid .tile")).to_have_count(N_CELLS, timeout=30_000)
    expect(page.locator("#upload-errors li")).to_have_count(1)
    expect(page.locator("#upload-errors li")).to_contain_text("corrupt.png")
    expect(page.locator("#case-view")).to_have_attribute("data-loaded", "true")
    assert page.locator("#grid img.cell").first.get_attribute("src").startswith(f"/api/v1/cases/{case_id}/cells/")
    stored = _stored(store, case_id)
    assert [c["name"] for c in stored["cells"]] == [n for n, _ in station["cells"]]
    flagged = {str(c["id"]) for c in stored["cells"] if c["flagged"]}
    assert flagged and page.locator("#grid .tile.waiting").count() == len(flagged)
    expect(page.locator("#sign-button")).to_be_disabled()
    expect(page.locator("#sign-help")).to_contain_text("still need a decision")
    expect(page.locator("#alert")).to_be_visible()  # the first cell's class is critical
    # A critical call still in a bin is in the alert, and its summary row says so rather than hiding it.
    in_bins = sum(c["critical"] and (c["needs_review"] or bool(c["out_of_domain"])) for c in stored["cells"])
    expect(page.locator("#summary .in-bins")).to_have_count(1 if in_bins else 0)
    if in_bins:
        expect(page.locator("#summary .in-bins")).to_have_text(f"+{in_bins} in the bins")

    # Reclassify a cell the model did not flag (into a class that is not critical): saved at once.
    cells = stored["cells"]
    changed = next((c for c in cells if not c["flagged"]), cells[1])
    target = next(c for c in ["NEU", *predictor.classes]
                  if c in predictor.classes and c != changed["predicted_label"] and c not in critical)
    tile = page.locator(f"#grid .tile[data-cell-id='{changed['id']}']")
    tile.locator("select.reclassify").select_option(target)
    _wait_saved(tile)
    expect(tile).to_have_attribute("data-label", target)
    expect(tile.locator(".badge")).to_contain_text("corrected")
    expect(page.locator("#case-status")).to_have_text("In progress")
    expect(page.locator("#audit-table tr[data-action='reclassify']")).to_have_count(1)

    # Confirm the flagged cells: the first with the keyboard, the others with their button.
    first_id = page.locator("#grid .tile.waiting").first.get_attribute("data-cell-id")
    page.locator(f"#grid .tile[data-cell-id='{first_id}']").focus()
    page.keyboard.press("Enter")
    _wait_saved(page.locator(f"#grid .tile[data-cell-id='{first_id}']"))
    # A flagged cell the reviewer cannot classify: key 0, "unidentified" (counted apart, never a training image).
    unidentified_id = None
    if page.locator("#grid .tile.waiting").count() >= 2:
        unidentified = page.locator("#grid .tile.waiting").last
        unidentified_id = unidentified.get_attribute("data-cell-id")
        unidentified.focus()
        page.keyboard.press("0")
        _wait_saved(page.locator(f"#grid .tile[data-cell-id='{unidentified_id}']"))
        expect(page.locator(f"#grid .tile[data-cell-id='{unidentified_id}'] .badge")).to_have_text("Unidentified ✓")
        expect(page.locator("#sum-unidentified")).to_have_text("1")
    while page.locator("#grid .tile.waiting").count():
        waiting = page.locator("#grid .tile.waiting").first
        waiting_id = waiting.get_attribute("data-cell-id")
        waiting.locator("button.confirm").click()
        _wait_saved(page.locator(f"#grid .tile[data-cell-id='{waiting_id}']"))
    expect(page.locator("#sign-button")).to_be_enabled()

    # What the page shows as saved is in the database, and a reload shows the case exactly as it was left.
    n_confirmed = len(flagged - {str(changed["id"]), unidentified_id})
    expect(page.locator("#audit-table tr[data-action='confirm']")).to_have_count(n_confirmed)  # refreshed after each
    before = _tiles(page)
    decided = {str(c["id"]): c["final_label"] for c in _stored(store, case_id)["cells"] if c["final_label"]}
    assert {i for i, (_, d, s, _) in before.items() if s == "saved"} == set(decided) == flagged | {str(changed["id"])}
    assert all(before[i][0] == label == before[i][3] for i, label in decided.items())
    if os.environ.get("NEUNN_SCREENSHOT_CASES"):
        page.screenshot(path=os.environ["NEUNN_SCREENSHOT_CASES"])
    page.reload()
    expect(page.locator("#case-view")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#grid .tile")).to_have_count(N_CELLS)
    assert _tiles(page) == before
    expect(page.locator("#case-status")).to_have_text("In progress")
    expect(page.locator("#sign-button")).to_be_enabled()
    page.check("#group-by-class")  # grouped by class as it stands, in the model's display order
    labels = [label for label, *_ in before.values()]
    expect(page.locator("#grid .group-head")).to_have_count(len(set(labels)))
    assert page.locator("#grid .tile").count() == N_CELLS
    page.uncheck("#group-by-class")
    expect(page.locator("#grid .group-head")).to_have_count(0)

    # Sign (two steps): the case is locked; the signer may amend, with a reason, in the tile's own form.
    page.click("#sign-button")
    page.click("#sign-now")
    expect(page.locator("#signed-banner")).to_be_visible()
    expect(page.locator("#case-status")).to_have_text("Signed")
    assert _stored(store, case_id)["status"] == "signed"
    expect(page.locator("#upload-panel")).to_be_hidden()
    amended = page.locator(f"#grid .tile[data-cell-id='{changed['id']}']")
    other = next(c for c in predictor.classes if c not in (target, changed["predicted_label"]))
    amended.locator("select.reclassify").select_option(other)
    form = amended.locator("form.amend")
    expect(form).to_be_visible()
    expect(form.locator(".amend-save")).to_be_disabled()
    form.locator(".amend-reason").fill("second look at the granules")
    form.locator(".amend-save").click()
    _wait_saved(amended)
    expect(amended).to_have_attribute("data-label", other)
    expect(form).to_be_hidden()
    assert next(c for c in _stored(store, case_id)["cells"] if c["id"] == changed["id"])["final_label"] == other
    expect(page.locator("#audit-table tr[data-action='amend'] td.detail")).to_contain_text("second look")
    with page.expect_download() as download:
        page.click("#export-audit-csv")
    assert "reclassify" in Path(download.value.path()).read_text()
    context.close()
    console.check()

    # Bob sees the signed case in his worklist, and its trail names Alice and her reclassification.
    context, page, console = _log_in(browser, url, BOB, allowed=(401,))  # 401: after logging out
    row = page.locator(f"#case-table tr[data-case-id='{case_id}']")
    expect(row.locator(".status-badge")).to_have_text("Signed")
    page.click("#status-filters .filter[data-status='signed']")
    expect(page.locator("#case-table tbody tr")).to_have_count(1)
    row.click()
    page.wait_for_url(f"{url}/#case={case_id}")
    expect(page.locator("#signed-text")).to_contain_text(ALICE[0])
    reclassified = page.locator("#audit-table tr[data-action='reclassify']").filter(has_text=f"→ {target}")
    expect(reclassified).to_have_count(1)
    expect(page.locator("#audit-table tr[data-action='reclassify']")).to_have_count(1 + (unidentified_id is not None))
    expect(reclassified.locator("td.who")).to_have_text(ALICE[0])
    expect(reclassified.locator("td.change")).to_have_text(f"{changed['predicted_label']} → {target}")
    expect(page.locator("#audit-table tr[data-action='sign'] td.who")).to_have_text(ALICE[0])
    assert page.locator("#grid select.reclassify:not([disabled])").count() == 0  # only the signer or an admin
    page.click("#logout")
    page.wait_for_url(f"{url}/login")
    page.goto(f"{url}/#worklist")  # the session ended on the server: back to the login page
    page.wait_for_url(re.compile(r"/login\?next=%2F%23worklist$"))
    context.close()
    console.check()
    with store.transaction() as db:
        trail = audit_trail(db, case_id)
    assert [e["action"] for e in trail].count("reclassify") == 1 + (unidentified_id is not None)
    if unidentified_id is not None:
        assert [e["to"] for e in trail if e["cell_id"] == int(unidentified_id)][-1] == "unidentified"


def test_two_reviewers_deciding_the_same_cell_conflict(station):
    url, store, browser, predictor = station["url"], station["store"], station["browser"], station["predictor"]
    token = httpx.post(f"{url}/api/v1/token", data={"username": BOB[0], "password": BOB[1]}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    case_id = httpx.post(f"{url}/api/v1/cases", json={"sample_id": "S-2026-0002"}, headers=auth).json()["id"]
    files = [("files", (n, d, "image/png")) for n, d in station["cells"][:2]]
    cell = httpx.post(f"{url}/api/v1/cases/{case_id}/cells", files=files, headers=auth, timeout=60).json()["cells"][0]

    alice, alice_page, alice_console = _log_in(browser, url, ALICE, f"/#case={case_id}")
    bob, bob_page, bob_console = _log_in(browser, url, BOB, f"/#case={case_id}", allowed=(409,))
    for page in (alice_page, bob_page):
        expect(page.locator("#grid .tile")).to_have_count(2)
    first, second = [c for c in predictor.classes if c != cell["predicted_label"]][:2]
    alice_tile = alice_page.locator(f"#grid .tile[data-cell-id='{cell['id']}']")
    alice_tile.locator("select.reclassify").select_option(first)
    _wait_saved(alice_tile)

    bob_tile = bob_page.locator(f"#grid .tile[data-cell-id='{cell['id']}']")  # still shows the model's call
    assert bob_tile.get_attribute("data-label") == cell["predicted_label"]
    bob_tile.locator("select.reclassify").select_option(second)
    expect(bob_tile.locator(".save-state")).to_have_attribute("data-state", "conflict")
    expect(bob_tile.locator(".save-state")).to_contain_text(f"changed by {ALICE[0]}")
    expect(bob_tile).to_have_attribute("data-label", first)
    assert bob_tile.locator("select.reclassify").input_value() == first
    expect(bob_tile.locator(".decision")).to_contain_text(ALICE[0])
    assert next(c for c in _stored(store, case_id)["cells"] if c["id"] == cell["id"])["final_label"] == first

    # Deciding again from the current state works.
    bob_tile.locator("select.reclassify").select_option(second)
    _wait_saved(bob_tile)
    assert next(c for c in _stored(store, case_id)["cells"] if c["id"] == cell["id"])["final_label"] == second
    alice.close()
    bob.close()
    alice_console.check()
    bob_console.check()


def test_confirm_shown_never_confirms_a_flagged_cell(station, trained_run, tmp_path):
    """"Confirm unflagged shown" confirms the unflagged undecided cells in one request, recorded as a bulk action; the
    flagged cells stay waiting for a decision of their own, so the case still cannot be signed."""
    browser, cells = station["browser"], station["cells"]
    predictor = Predictor.from_run(trained_run)  # a station of its own: no critical class, half the cells in review
    confidences = sorted(p.probability for p in predictor.predict_sources(cells))
    predictor.policy = predictor.policy.overridden(review_threshold=(confidences[2] + confidences[3]) / 2,
                                                   critical="none", classes=predictor.classes)
    store = open_store(tmp_path / "store")
    with store.transaction() as db:
        add_user(db, *ALICE, role="pathologist")
    with serving(create_app(predictor, store=store, model_info={"run": "tiny"})) as url:
        token = httpx.post(f"{url}/api/v1/token", data={"username": ALICE[0], "password": ALICE[1]}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        case_id = httpx.post(f"{url}/api/v1/cases", json={"sample_id": "S-2026-0003"}, headers=auth).json()["id"]
        files = [("files", (n, d, "image/png")) for n, d in cells]
        stored = httpx.post(f"{url}/api/v1/cases/{case_id}/cells", files=files, headers=auth, timeout=60).json()
        flagged = {c["id"] for c in stored["cells"] if c["flagged"]}
        plain = {c["id"] for c in stored["cells"]} - flagged
        assert len(flagged) >= 3 and len(plain) >= 1  # the review bin takes the three least confident, at least

        context, page, console = _log_in(browser, url, ALICE, f"/#case={case_id}")
        expect(page.locator("#grid .tile")).to_have_count(N_CELLS)
        button = page.locator("#confirm-shown")
        expect(button).to_have_text(f"Confirm {len(plain)} unflagged shown")
        button.click()
        for cell_id in plain:
            _wait_saved(page.locator(f"#grid .tile[data-cell-id='{cell_id}']"))
        expect(button).to_be_disabled()
        expect(page.locator("#grid .tile.waiting")).to_have_count(len(flagged))
        expect(page.locator("#sign-button")).to_be_disabled()
        expect(page.locator("#audit-table tr[data-action='bulk_confirm']")).to_have_count(len(plain))
        decided = {c["id"] for c in _stored(store, case_id)["cells"] if c["final_label"] is not None}
        assert decided == plain
        # The server refuses a flagged cell in bulk whatever a page sends: nothing is confirmed.
        one = next(c for c in stored["cells"] if c["id"] in flagged)
        refused = httpx.post(f"{url}/api/v1/cases/{case_id}/bulk-confirmation", headers=auth,
                             json={"cells": [{"id": one["id"], "version": one["version"]}]})
        assert refused.status_code == 422 and "decision of their own" in refused.json()["error"]
        assert {c["id"] for c in _stored(store, case_id)["cells"] if c["final_label"] is not None} == plain
        with store.transaction() as db:
            trail = audit_trail(db, case_id)
        assert {e["cell_id"] for e in trail if e["action"] == "bulk_confirm"} == plain
        context.close()
        console.check()
    store.close()
