"""The vacuole finder: round pale spots are found where they are, in the cytoplasm only; a run's finder is fitted on
its own cells, kept as JSON, and every prediction carries its score, its verdict and the spots to mark."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from neunn.cli import main
from neunn.data.cell_regions import find_regions
from neunn.data.cytoplasm_findings import FEATURES, find_vacuoles, measure_vacuoles
from neunn.data.vacuole_painting import paint_vacuoles
from neunn.inference.predictor import Predictor
from neunn.rundir import RunDir
from neunn.training.finding_fit import fit_finding_model, out_of_fold_scores

NEUTROPHILS = Path(__file__).resolve().parents[2] / "shared" / "data" / "neutro-vac-dev" / "normal"
HOLES = [(180.0, 238.0), (122.0, 180.0), (221.0, 139.0)]  # (row, column) of the drawn vacuoles, 58 px out


def _cell(holes: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """A 360 px crop: cream background, a lilac granular cytoplasm (r 80) round a purple nucleus (r 45), and clear
    round holes of radius 5 px in the cytoplasm."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:360, :360]
    r = np.hypot(yy - 180, xx - 180)
    rgb = np.empty((360, 360, 3), dtype=np.float64)
    rgb[:] = (245, 230, 215)
    rgb[r <= 80] = (200, 160, 205)
    rgb[r <= 45] = (70, 40, 120)
    rgb += rng.normal(0, 4, rgb.shape) * (r <= 80)[..., None]
    for y, x in holes:
        rgb[np.hypot(yy - y, xx - x) <= 5] = (240, 228, 225)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_round_pale_spots_are_found_where_they_are_and_only_in_the_cytoplasm():
    spots = find_vacuoles(_cell(HOLES))
    found = sorted((round(s.y), round(s.x)) for s in spots)
    assert len(spots) == len(HOLES)
    for (y, x), (fy, fx) in zip(sorted(HOLES), found):
        assert abs(fy - y) <= 2 and abs(fx - x) <= 2
    assert all(3 <= s.radius <= 9 and s.contrast > 0.5 and s.eccentricity < 0.6 for s in spots)
    assert find_vacuoles(_cell([])) == []
    outside = find_vacuoles(_cell([(30.0, 30.0), (180.0, 180.0)]))  # on the background, in the nucleus
    assert outside == []
    features, spots = measure_vacuoles(_cell(HOLES))
    assert list(features) == list(FEATURES) and features["n_spots"] == 3
    assert features["largest_radius"] == pytest.approx(max(s.radius for s in spots))


@pytest.mark.skipif(not NEUTROPHILS.is_dir(), reason="real neutrophils shared/data/neutro-vac-dev are not present")
def test_vacuoles_painted_into_real_neutrophils_are_found():
    from PIL import Image

    rng = np.random.default_rng(0)
    more = 0
    files = sorted(NEUTROPHILS.iterdir())[:10]
    for path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        painted = paint_vacuoles(rgb, rng)
        before, after = measure_vacuoles(rgb)[0], measure_vacuoles(painted)[0]
        more += after["n_spots"] > before["n_spots"] or after["strongest_contrast"] > before["strongest_contrast"]
        assert find_regions(painted).cytoplasm.any()
    assert more >= 8  # the painted holes stand out in at least 8 of 10 cells


def test_the_model_is_plain_numbers_and_its_threshold_is_chosen_out_of_fold():
    rng = np.random.default_rng(0)
    positive = np.arange(120) < 30
    rows = rng.normal(0, 1, (120, len(FEATURES))) + positive[:, None] * np.array([2.0, 0, 0, 0, 1.0])
    model = fit_finding_model(rows, positive)
    json.dumps(model.__dict__)  # nothing but numbers and names
    scores = model.scores(rows)
    assert scores[positive].mean() > scores[~positive].mean() and model.coef[0] > 0 and model.coef[0] > model.coef[1]
    inner = out_of_fold_scores(rows, positive)
    assert inner.shape == (120,) and not np.allclose(inner, scores)  # each cell scored by a model fitted without it


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_a_runs_finder_reaches_every_prediction_and_the_csv(run: Path, phantom_dir: Path, tmp_path: Path, capsys):
    files = sorted(phantom_dir.rglob("*.png"))[::6]
    plain = list(Predictor.from_run(run).predict_files(files))
    assert main(["screen", "fit", "vacuoles", str(run), "--finding", "HYP", "--target-sensitivity", "0.9"]) == 0
    assert "vacuole finder for 'HYP'" in capsys.readouterr().out
    saved = json.loads(RunDir(run).vacuole_file.read_text())
    assert saved["finding"] == "HYP" and saved["model"]["features"] == list(FEATURES)
    predictor = Predictor.from_run(run)
    finder = predictor.screen("vacuole_finder")
    screened = list(predictor.predict_files(files))
    for before, after in zip(plain, screened):
        call = after.screens["vacuole_finder"]
        assert after.vacuole_score == call.value and after.vacuoles_found == (call.value >= finder.threshold)
        assert call.detail["n_spots"] >= len(call.detail["spots"])
        assert (after.label, after.probs, after.out_of_domain) == (before.label, before.probs, before.out_of_domain)
        assert after.needs_review == (before.needs_review or (after.vacuoles_found and after.label != "HYP"))
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), *map(str, files), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [float(r["vacuole_score"]) for r in rows] == pytest.approx([p.vacuole_score for p in screened], abs=1e-4)
    assert main(["screen", "remove", str(run), "vacuole_finder"]) == 0
    assert Predictor.from_run(run).screen("vacuole_finder") is None


def test_the_case_page_marks_the_spots_and_m_toggles_them(run: Path, phantom_dir: Path, tmp_path: Path):
    """Playwright in the system's Chromium: a tile whose cell the finder flags shows its spots as circles and their
    count; M hides and shows them."""
    from conftest import CHROMIUM, CHROMIUM_ARGS, serving

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    import httpx

    from neunn.cases import open_store
    from neunn.cases.users import add_user
    from neunn.serve import create_app

    # A finder that flags a cell with at least two spots, and synthetic cells with three drawn holes and none.
    from neunn.inference.screens.vacuoles import FindingModel, VacuoleFinder

    zeros = (0.0,) * (len(FEATURES) - 1)
    VacuoleFinder("HYP", FindingModel(FEATURES, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), (4.0, *zeros), -6.0),
                  0.5, 0.9, {}).write(RunDir(run))
    import io

    from PIL import Image

    def png(rgb) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        return buffer.getvalue()
    store = open_store(tmp_path / "store")
    with store.transaction() as db:
        add_user(db, "ana", "ana-password-1", role="pathologist")
    with serving(create_app(Predictor.from_run(run), store=store, model_info={"run": "tiny"})) as url, \
            sync_api.sync_playwright() as playwright:
        token = httpx.post(f"{url}/api/v1/token", data={"username": "ana", "password": "ana-password-1"}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        case_id = httpx.post(f"{url}/api/v1/cases", json={"sample_id": "S-marks"}, headers=auth).json()["id"]
        uploads = [("files", ("holes.png", png(_cell(HOLES)), "image/png")),
                   ("files", ("plain.png", png(_cell([], seed=1)), "image/png"))]
        cells = httpx.post(f"{url}/api/v1/cases/{case_id}/cells", files=uploads, headers=auth, timeout=60).json()
        marked = [c for c in cells["cells"] if c["vacuoles_found"] and c["screens"]["vacuole_finder"]["detail"]["spots"]]
        assert [c["name"] for c in marked] == ["holes.png"]
        cell = marked[0]
        plain = cells["cells"][1]["id"]
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context().new_page()
        page.goto(f"{url}/login?next=%2F%23case%3D{case_id}")
        page.fill("#login-name", "ana")
        page.fill("#login-password", "ana-password-1")
        page.click("#login-submit")
        tile = page.locator(f"#grid .tile[data-cell-id='{cell['id']}']")
        expect = sync_api.expect
        expect(tile.locator("svg.marks circle")).to_have_count(len(cell["screens"]["vacuole_finder"]["detail"]["spots"]))
        n = cell["screens"]["vacuole_finder"]["detail"]["n_spots"]
        expect(tile.locator(".finding-note")).to_contain_text(f"{n} pale spot")
        tile.focus()
        page.keyboard.press("m")
        expect(tile.locator("svg.marks")).to_be_hidden()
        page.keyboard.press("m")
        expect(tile.locator("svg.marks")).to_be_visible()
        expect(page.locator(f"#grid .tile[data-cell-id='{plain}'] svg.marks")).to_be_hidden()
        # R outlines the cell and its nucleus where the finder looked, on a tile with or without spots
        expect(page.locator("#keys-help")).to_contain_text("R outline")
        expect(tile.locator("svg.marks polygon")).to_have_count(0)
        page.keyboard.press("r")
        expect(tile.locator("svg.marks polygon.outline-cell")).to_have_count(1)
        expect(tile.locator("svg.marks polygon.outline-nucleus")).to_have_count(1)
        points = tile.locator("svg.marks polygon.outline-nucleus").get_attribute("points").split()
        assert len(points) >= 10
        page.keyboard.press("m")  # the spots off, the outline stays
        expect(tile.locator("svg.marks circle")).to_have_count(0)
        expect(tile.locator("svg.marks polygon")).to_have_count(2)
        page.keyboard.press("r")
        expect(tile.locator("svg.marks")).to_be_hidden()
        other = page.locator(f"#grid .tile[data-cell-id='{plain}']")
        other.focus()
        page.keyboard.press("r")
        expect(other.locator("svg.marks polygon")).to_have_count(2)
        browser.close()
    store.close()


def test_the_outlines_follow_the_cell_and_its_nucleus():
    from neunn.data.cell_regions import find_regions, region_outlines

    rgb = _cell(HOLES)
    regions = find_regions(rgb)
    outline = region_outlines(regions)
    for name, mask in (("cell", regions.cytoplasm | regions.nucleus), ("nucleus", regions.nucleus)):
        points = np.asarray(outline[name])
        assert 10 <= len(points) <= 2 * 48
        ys, xs = np.nonzero(mask)
        assert xs.min() - 1.5 <= points[:, 0].min() and points[:, 0].max() <= xs.max() + 1.5  # [x, y] pixels
        assert ys.min() - 1.5 <= points[:, 1].min() and points[:, 1].max() <= ys.max() + 1.5
    cell_span = np.ptp(np.asarray(outline["cell"]), axis=0)
    assert (cell_span > np.ptp(np.asarray(outline["nucleus"]), axis=0)).all()  # the nucleus lies inside the cell
