"""End-to-end test of the two-level sign-out on the case page in headless Chromium: a technologist submits a case with a
critical finding and a pathologist verifies and signs it, recording the communication of the finding; "other cell
type" by key with the focus moving on; voided cells and cases; repeated uploads; the unreachable-server banner; the
account dialog (your own password, an admin's users).

As tests/test_cases_browser.py: Playwright drives the system's Chromium (skipped cleanly without it), one uvicorn
server on a loopback port and one browser serve the module, each user has a browser context of their own. The tiny
model calls almost every cell one class, so a critical finding is made by deciding a cell as GBI (a critical class
here); the review threshold is set so low that only the screens can flag a cell.

    NEUNN_SCREENSHOT_SIGNOUT=/tmp/signout pytest tests/test_signout_browser.py

also saves screenshots (signed case with its communication; a voided cell) with that prefix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from neunn.cases import open_store
from neunn.cases.casework import get_case
from neunn.cases.users import add_user
from neunn.inference.predictor import Predictor
from neunn.serve import create_app

from conftest import CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

TESS, PAT, CHIEF, NIA = (("tess", "tess-password-1"), ("pat", "pat-password-1"), ("chief", "chief-password-1"),
                         ("nia", "nia-password-1"))
CRITICAL = "GBI"
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


class Console:
    """JS errors, CSP violations and failed loads a page reports (but the HTTP statuses a test expects)."""

    def __init__(self, page, allowed: tuple[int, ...] = ()) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("console", lambda m: self._console(m, allowed))

    def _console(self, message, allowed) -> None:
        failed = FAILED_LOAD.search(message.text)
        if message.type in ("error", "warning") and not (failed and int(failed.group(1)) in allowed):
            self.problems.append(f"{message.type}: {message.text}")

    def check(self) -> None:
        assert not self.problems, self.problems


def _images(data_dir: Path, n: int) -> list[tuple[str, bytes]]:
    """``n`` distinct phantom images, none of the critical class (so only a decision makes a finding)."""
    paths = sorted(p for p in data_dir.rglob("*.png") if p.parent.name != CRITICAL)
    return [(p.name, p.read_bytes()) for p in paths[:: max(1, len(paths) // n)][:n]]


@pytest.fixture(scope="module")
def station(trained_run, phantom_dir, tmp_path_factory):
    predictor = Predictor.from_run(trained_run)
    predictor.policy = predictor.policy.overridden(review_threshold=0.01, critical=[CRITICAL],
                                                   classes=predictor.classes)
    store = open_store(tmp_path_factory.mktemp("signout") / "store")
    with store.transaction() as db:
        add_user(db, *TESS, role="technologist")
        add_user(db, *PAT, role="pathologist")
        add_user(db, *CHIEF, role="admin")
        add_user(db, *NIA, role="technologist")
    app = create_app(predictor, store=store, model_info={"run": "run"})  # a run folder named "run"
    with serving(app) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield {"url": url, "store": store, "browser": browser, "images": _images(phantom_dir, 8)}
        browser.close()


def _bearer(url: str, who: tuple[str, str]) -> dict[str, str]:
    answer = httpx.post(f"{url}/api/v1/token", data={"username": who[0], "password": who[1]})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _new_case(station, sample_id: str, n_cells: int) -> tuple[int, list[dict]]:
    """A case of ``n_cells`` of the sample's images, made by the technologist through the API."""
    url, auth = station["url"], _bearer(station["url"], TESS)
    case_id = httpx.post(f"{url}/api/v1/cases", json={"sample_id": sample_id}, headers=auth).json()["id"]
    files = [("files", (n, d, "image/png")) for n, d in station["images"][:n_cells]]
    cells = httpx.post(f"{url}/api/v1/cases/{case_id}/cells", files=files, headers=auth, timeout=60).json()["cells"]
    assert len(cells) == n_cells
    return case_id, cells


def _log_in(station, who, next_path: str = "/", allowed: tuple[int, ...] = ()):
    url = station["url"]
    context = station["browser"].new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    console = Console(page, allowed)
    page.goto(f"{url}/login" + ("" if next_path == "/" else f"?next={next_path.replace('#', '%23')}"))
    page.fill("#login-name", who[0])
    page.fill("#login-password", who[1])
    page.click("#login-submit")
    page.wait_for_url(f"{url}{next_path}")
    expect(page.locator("#user-name")).to_have_text(who[0])
    if "#case=" in next_path:
        expect(page.locator("#case-view")).to_have_attribute("data-loaded", "true")
    return context, page, console


def _stored(store, case_id: int) -> dict:
    with store.transaction() as db:
        return get_case(db, case_id)


def _tile(page, cell_id) -> object:
    return page.locator(f"#grid .tile[data-cell-id='{cell_id}']")


def _decide_waiting(page) -> None:
    """Confirm every cell that still needs a decision (the screens may flag some), one by one."""
    while page.locator("#grid .tile.waiting").count():
        waiting = page.locator("#grid .tile.waiting").first
        cell_id = waiting.get_attribute("data-cell-id")
        waiting.locator("button.confirm").click()
        expect(_tile(page, cell_id).locator(".save-state")).to_have_attribute("data-state", "saved")


def _screenshot(page, name: str) -> None:
    if os.environ.get("NEUNN_SCREENSHOT_SIGNOUT"):
        page.screenshot(path=f"{os.environ['NEUNN_SCREENSHOT_SIGNOUT']}-{name}.png", full_page=True)


def _focused_cell(page) -> str | None:
    return page.evaluate("document.activeElement?.closest('.tile')?.dataset.cellId ?? null")


def test_a_technologist_submits_a_critical_case_and_a_pathologist_verifies_and_signs_it(station):
    store = station["store"]
    case_id, cells = _new_case(station, "S-CRIT-1", 3)
    context, page, console = _log_in(station, TESS, f"/#case={case_id}")
    expect(page.locator("#model-line")).to_contain_text("run · ")
    assert "Run run" not in page.locator("#model-line").inner_text()
    expect(page.locator("#calls-panel")).to_be_hidden()  # no critical finding yet

    tile = _tile(page, cells[0]["id"])
    tile.locator("select.reclassify").select_option(CRITICAL)  # the technologist sees green-blue inclusions
    expect(tile.locator(".save-state")).to_have_attribute("data-state", "saved")
    expect(page.locator("#alert")).to_be_visible()
    _decide_waiting(page)
    button = page.locator("#sign-button")
    expect(button).to_have_text("Submit for verification…")
    expect(button).to_be_enabled()
    expect(page.locator("#sign-note")).to_contain_text("a pathologist signs it")
    expect(page.locator("#calls-panel")).to_be_visible()
    expect(page.locator("#call-none")).to_be_visible()
    button.click()
    expect(page.locator("#sign-confirm-text")).to_contain_text("verification")
    page.click("#sign-now")
    expect(page.locator("#case-status")).to_have_text("To verify")
    expect(button).to_be_hidden()
    expect(page.locator("#sign-help")).to_contain_text("Submitted for verification by tess")
    stored = _stored(store, case_id)
    assert (stored["status"], stored["submitted_by"]) == ("to_verify", "tess")

    # The worklist shows it to verify, and its filter lists it alone.
    page.click("#nav-worklist")
    row = page.locator(f"#case-table tr[data-case-id='{case_id}']")
    expect(row.locator(".status-badge")).to_have_text("To verify")
    page.click("#status-filters .filter[data-status='to_verify']")
    expect(page.locator("#case-table tbody tr")).to_have_count(1)
    expect(page.locator("#status-filters .filter[data-status='to_verify'] span")).to_have_text("1")
    context.close()
    console.check()

    # The pathologist verifies and signs; with no communication recorded yet the page reminds them to record it.
    context, page, console = _log_in(station, PAT, f"/#case={case_id}")
    expect(button := page.locator("#sign-button")).to_have_text("Verify and sign…")
    expect(page.locator("#sign-note")).to_contain_text("Submitted for verification by tess")
    button.click()
    expect(page.locator("#sign-confirm-text")).to_contain_text("No communication of the critical finding")
    page.click("#sign-now")
    expect(page.locator("#case-status")).to_have_text("Signed")
    expect(page.locator("#call-reminder")).to_be_visible()
    stored = _stored(store, case_id)
    assert (stored["status"], stored["signed_by"], stored["submitted_by"]) == ("signed", "pat", "tess")

    # Record the communication: to whom, how, when (now by default), a note; it is listed, and the reminder goes.
    page.click("#call-reminder-record")
    expect(page.locator("#call-form")).to_be_visible()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", page.locator("#call-when").input_value())
    expect(page.locator("#call-recipient")).to_be_focused()
    page.fill("#call-recipient", "Dr Lee, ward 5 (on call)")
    page.select_option("#call-method", "phone")
    page.fill("#call-when", "2026-01-02T09:30")
    page.fill("#call-note", "read back and confirmed")
    page.press("#call-note", "Enter")
    calls = page.locator("#call-list li")
    expect(calls).to_have_count(1)
    expect(calls).to_contain_text("Dr Lee, ward 5 (on call)")
    expect(calls).to_contain_text("phone · 2026-01-02 09:30")
    expect(calls).to_contain_text("recorded by pat")
    expect(calls).to_contain_text("read back and confirmed")
    expect(page.locator("#call-form")).to_be_hidden()
    expect(page.locator("#call-reminder")).to_be_hidden()
    expect(page.locator("#audit-table tr[data-action='communicate'] td.detail")).to_contain_text("Dr Lee")
    recorded = _stored(store, case_id)["critical_calls"]
    assert [(c["recipient"], c["method"], c["recorded_by"]) for c in recorded] == [
        ("Dr Lee, ward 5 (on call)", "phone", "pat")]
    _screenshot(page, "signed")
    page.reload()
    expect(page.locator("#call-list li")).to_have_count(1)
    context.close()
    console.check()


def test_other_cell_type_by_key_and_the_focus_moves_to_the_next_cell(station):
    store = station["store"]
    case_id, cells = _new_case(station, "S-OTHER-1", 4)
    context, page, console = _log_in(station, TESS, f"/#case={case_id}")
    keys = page.locator("#keys-help")
    for key in ("0 unidentified", "O other cell type", "Enter confirm", "H heatmap", "M marks"):
        expect(keys).to_contain_text(key)
    assert "Other cell type (not a neutrophil)" in _tile(page, cells[0]["id"]).locator("select.reclassify").inner_text()

    flagged = [c["id"] for c in cells if c["flagged"]]
    _tile(page, cells[0]["id"]).focus()
    page.keyboard.press("o")
    expect(_tile(page, cells[0]["id"]).locator(".save-state")).to_have_attribute("data-state", "saved")
    expect(_tile(page, cells[0]["id"]).locator(".badge")).to_have_text("Other cell type ✓")
    expect(page.locator("#sum-other")).to_have_text("1")
    # On to the next cell that needs a decision: a flagged one first, else the next undecided one.
    after = [c["id"] for c in cells[1:] if c["id"] in flagged] or [cells[1]["id"]]
    page.wait_for_function("(id) => document.activeElement?.dataset?.cellId === String(id)", arg=after[0])
    # Each cell one key: the focused one is classified with "1" and the focus moves on again.
    page.keyboard.press("1")
    expect(_tile(page, after[0]).locator(".save-state")).to_have_attribute("data-state", "saved")
    page.wait_for_function("(id) => document.activeElement?.dataset?.cellId !== String(id)", arg=after[0])
    assert _focused_cell(page) not in (str(cells[0]["id"]), str(after[0]))
    finals = {c["id"]: c["final_label"] for c in _stored(store, case_id)["cells"]}
    assert finals[cells[0]["id"]] == "other_cell_type" and finals[after[0]] is not None
    page.reload()
    expect(page.locator("#case-view")).to_have_attribute("data-loaded", "true")
    assert _tile(page, cells[0]["id"]).locator("select.reclassify").input_value() == "other_cell_type"
    expect(page.locator("#sum-other")).to_have_text("1")
    context.close()
    console.check()


def test_a_voided_cell_leaves_the_counts_and_a_voided_case_the_worklist(station):
    url, store = station["url"], station["store"]
    auth = _bearer(url, TESS)
    case_id = httpx.post(f"{url}/api/v1/cases", json={"sample_id": "S-VOID-1"}, headers=auth).json()["id"]
    context, page, console = _log_in(station, TESS, f"/#case={case_id}", allowed=(409,))
    (name_a, data_a), (name_b, data_b), (name_c, data_c) = station["images"][:3]
    page.set_input_files("#file-input", [
        {"name": name_a, "mimeType": "image/png", "buffer": data_a},
        {"name": name_b, "mimeType": "image/png", "buffer": data_b},
        {"name": "again.png", "mimeType": "image/png", "buffer": data_a}])  # the same image twice in one upload
    expect(page.locator("#grid .tile")).to_have_count(2, timeout=30_000)
    duplicate = page.locator("#upload-errors li.duplicate")
    expect(duplicate).to_have_count(1)
    expect(duplicate).to_contain_text("again.png")
    expect(duplicate).to_contain_text("already in the case")
    expect(page.locator("#progress")).to_contain_text("1 already in the case")
    page.set_input_files("#file-input", [{"name": "later.png", "mimeType": "image/png", "buffer": data_b},
                                         {"name": name_c, "mimeType": "image/png", "buffer": data_c}])
    expect(page.locator("#grid .tile")).to_have_count(3, timeout=30_000)
    expect(page.locator("#upload-errors li.duplicate")).to_contain_text(f"already in the case as #2 · {name_b}")

    cells = _stored(store, case_id)["cells"]
    victim = cells[0]
    label_row = page.locator(f"#summary tbody tr[data-label='{victim['predicted_label']}'] td.num").first
    before = int(label_row.inner_text())
    expect(page.locator("#reviewed-count")).to_contain_text("of 3")
    tile = _tile(page, victim["id"])
    tile.locator(".void-open").click()
    expect(tile.locator(".void-reason")).to_be_focused()
    expect(tile.locator(".void-save")).to_be_disabled()
    tile.locator(".void-reason").fill("another patient's slide")
    tile.locator(".void-reason").press("Enter")
    expect(tile).to_have_class(re.compile(r"\bvoided\b"))
    expect(tile.locator(".void-note")).to_contain_text("another patient's slide")
    expect(tile.locator(".badge")).to_have_text("Voided")
    expect(tile.locator("select.reclassify")).to_be_disabled()
    expect(label_row).to_have_text(str(before - 1))
    expect(page.locator("#reviewed-count")).to_contain_text("of 2")
    expect(page.locator("#sum-voided")).to_contain_text("1 voided cell")
    expect(page.locator("#case-facts")).to_contain_text("Voided cells")
    stored = _stored(store, case_id)
    assert next(c for c in stored["cells"] if c["id"] == victim["id"])["voided"] is True
    assert stored["n_cells"] == 2
    _screenshot(page, "voided-cell")
    page.reload()
    expect(page.locator("#case-view")).to_have_attribute("data-loaded", "true")
    expect(_tile(page, victim["id"])).to_have_class(re.compile(r"\bvoided\b"))
    expect(label_row).to_have_text(str(before - 1))

    # The whole case was the wrong one: voided with a reason, back to the worklist, listed under Void only.
    page.click("#void-case-open")
    expect(page.locator("#void-case-reason")).to_be_focused()
    page.fill("#void-case-reason", "opened for the wrong sample")
    page.click("#void-case-save")
    page.wait_for_url(f"{url}/#worklist")
    expect(page.locator("#worklist-note")).to_contain_text("S-VOID-1 was voided")
    expect(page.locator("#case-table")).to_have_attribute("data-loaded", "true")
    expect(page.locator(f"#case-table tr[data-case-id='{case_id}']")).to_have_count(0)
    page.click("#status-filters .filter[data-status='void']")
    expect(page.locator(f"#case-table tr[data-case-id='{case_id}'] .status-badge")).to_have_text("Void")
    expect(page.locator(f"#case-table tr[data-case-id='{case_id}']")).to_contain_text("opened for the wrong sample")
    assert _stored(store, case_id)["status"] == "void"
    context.close()
    console.check()


def test_the_banner_says_when_the_server_cannot_be_reached(station):
    context, page, _ = _log_in(station, TESS)  # aborted requests are logged: no console check here
    expect(page.locator("#case-table")).to_have_attribute("data-loaded", "true")
    banner = page.locator("#offline-banner")
    expect(banner).to_be_hidden()
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    page.click("#worklist-refresh")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The server cannot be reached: nothing is being saved")
    page.fill("#new-sample-id", "S-OFFLINE-1")
    page.click("#new-case-submit")
    expect(page.locator("#new-case-error")).to_contain_text("cannot be reached")
    expect(banner).to_be_visible()
    page.unroute("**/api/v1/**")
    page.click("#worklist-refresh")  # a request answered again: the banner goes
    expect(banner).to_be_hidden()
    # Without any request of the page's own, the probe finds the server back within seconds.
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    page.click("#worklist-refresh")
    expect(banner).to_be_visible()
    page.unroute("**/api/v1/**")
    expect(banner).to_be_hidden(timeout=15_000)
    # The one-sample page has the same banner, and a conflict's time is written as local time, not ISO.
    shown = page.evaluate("import('/static/core-format.js').then((m) => m.readableTimes("
                          "'This cell was changed by pat at 2026-01-02T09:30:00.000Z (now GBI).'))")
    assert "T09:30" not in shown and re.search(r"at \d{4}-\d{2}-\d{2} \d{2}:\d{2} \(now GBI\)", shown)
    assert 'id="offline-banner"' in httpx.get(f"{station['url']}/static/index.html").text
    context.close()


def test_the_account_dialog_changes_your_password_and_an_admin_manages_users(station):
    url = station["url"]
    context, page, console = _log_in(station, NIA, allowed=(403,))  # 403: a wrong current password
    page.click("#account-open")
    dialog = page.locator("#account-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#users-panel")).to_be_hidden()  # not an admin
    expect(page.locator("#password-current")).to_be_focused()
    page.fill("#password-current", "not the password")
    page.fill("#password-new", "nia-password-2")
    page.fill("#password-repeat", "nia-password-2")
    page.click("#password-save")
    expect(page.locator("#password-message")).to_contain_text("current password is wrong")
    page.fill("#password-current", NIA[1])
    page.fill("#password-new", "nia-password-2")
    page.fill("#password-repeat", "nia-password-2")
    page.click("#password-save")
    expect(page.locator("#password-message")).to_contain_text("Password changed")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.click("#worklist-refresh")  # this login goes on
    expect(page.locator("#case-table")).to_have_attribute("data-loaded", "true")
    assert httpx.post(f"{url}/api/v1/token", data={"username": NIA[0], "password": NIA[1]}).status_code == 401
    _bearer(url, (NIA[0], "nia-password-2"))
    context.close()
    console.check()

    # An admin: the users, a role change, disable and re-enable, a reset password.
    context, page, console = _log_in(station, CHIEF)
    page.click("#account-open")
    expect(page.locator("#users-panel")).to_be_visible()
    nia = page.locator("#users-table tr[data-name='nia']")
    expect(nia).to_have_count(1)
    nia.locator("select.user-role").select_option("pathologist")
    expect(page.locator("#users-message")).to_contain_text("nia is now pathologist")
    nia.locator("button.user-active").click()
    expect(nia).to_have_attribute("data-active", "false")
    expect(nia.locator("button.user-active")).to_have_text("Re-enable")
    assert httpx.post(f"{url}/api/v1/token", data={"username": "nia", "password": "nia-password-2"}).status_code == 401
    nia.locator("button.user-active").click()
    expect(nia).to_have_attribute("data-active", "true")
    page.select_option("#reset-name", "nia")
    page.fill("#reset-password", "temporary-pass-1")
    page.click("#reset-save")
    expect(page.locator("#users-message")).to_contain_text("password of nia was reset")
    users = httpx.get(f"{url}/api/v1/users", headers=_bearer(url, CHIEF)).json()["users"]
    assert next(u for u in users if u["name"] == "nia")["role"] == "pathologist"
    _bearer(url, ("nia", "temporary-pass-1"))
    page.click("#account-close")
    expect(page.locator("#account-dialog")).to_be_hidden()
    context.close()
    console.check()


def test_two_reviewers_see_each_other_and_each_others_decisions_without_a_reload(station):
    case_id, cells = _new_case(station, "S-LIVE-1", 3)
    tess_context, tess, tess_console = _log_in(station, TESS, f"/#case={case_id}")
    pat_context, pat, pat_console = _log_in(station, PAT, f"/#case={case_id}")
    expect(tess.locator("#case-viewers")).to_have_text("Also on this case: pat", timeout=10_000)
    expect(pat.locator("#case-viewers")).to_have_text("Also on this case: tess", timeout=10_000)
    first = cells[0]["id"]
    _tile(pat, first).focus()
    pat.keyboard.press("0")  # pat calls it unidentified; tess's page shows it without a reload
    expect(_tile(pat, first).locator(".save-state")).to_have_attribute("data-state", "saved")
    expect(_tile(tess, first).locator(".badge")).to_contain_text("Unidentified", timeout=10_000)
    # A decision made elsewhere (through the API, as by another server process) arrives the same way.
    answer = httpx.put(f"{station['url']}/api/v1/cases/{case_id}/cells/{cells[1]['id']}/decision",
                       json={"label": CRITICAL, "version": cells[1]["version"]}, headers=_bearer(station["url"], PAT))
    assert answer.status_code == 200, answer.text
    expect(_tile(tess, cells[1]["id"]).locator(".badge")).to_contain_text(CRITICAL, timeout=10_000)
    expect(tess.locator("#sign-button")).to_contain_text("Submit for verification")  # a critical finding now
    pat_context.close()
    expect(tess.locator("#case-viewers")).to_be_hidden(timeout=10_000)
    tess_console.check()
    pat_console.check()
    tess_context.close()


def test_the_print_view_shows_the_case_without_its_controls(station):
    import io

    from pypdf import PdfReader

    case_id, cells = _new_case(station, "S-PRINT-1", 3)
    context, page, console = _log_in(station, PAT, f"/#case={case_id}")
    page.evaluate("window.print = () => { window.printed = true; }")  # the dialog itself is the browser's
    page.click("#print-case")
    assert page.evaluate("window.printed") is True
    expect(page.locator("#print-sample")).to_have_text("S-PRINT-1")
    expect(page.locator("#print-who")).to_have_text(PAT[0])
    expect(page.locator("#print-header")).to_be_hidden()  # on screen, only in print
    page.emulate_media(media="print")
    expect(page.locator("#print-header")).to_be_visible()
    for hidden in ("#upload-panel", "#sign-panel", ".topbar", "#print-case"):
        expect(page.locator(hidden).first).to_be_hidden()
    expect(page.locator("#summary")).to_be_visible()
    expect(page.locator("#grid .tile").first).to_be_visible()
    expect(page.locator("#grid .tile .controls").first).to_be_hidden()
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(page.pdf())).pages)
    assert "NeuNN case S-PRINT-1" in text and "not a diagnostic device" in " ".join(text.split())
    console.check()
    context.close()
