"""The pages' one JavaScript core: both review pages load the shared modules, and what they share has one home.

The one-sample page (index.html) and the case station (cases.html) are plain ES modules with no build step; the API
client, a cell's rendering on a tile (call, badge, heatmap, vacuole marks), the summary panel and the formatting live in
static/core-*.js. These tests read the files (no browser) and fail if a copy of a shared function comes back in a page's
own module, or if a page reads a screen's flat copy of a field instead of the per-cell record's ``screens``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import neunn.serve
from neunn.inference.screens import field_names

STATIC = Path(neunn.serve.__file__).parent / "static"
CORE = {"core-api.js", "core-format.js", "core-summary.js", "core-tiles.js"}

# Each shared name → the one file that defines it.
HOMES = {
    "core-api.js": ["api", "bodyOf", "errorOf", "credentials", "LoggedOut", "onAuthFailure"],
    "core-tiles.js": ["renderCall", "callBadge", "showHeatmap", "toggleHeatmap", "heatmapShown", "drawMarks",
                      "toggleMarks", "findings", "moveFocus", "forgetCells"],
    "core-summary.js": ["showSummary"],
    "core-format.js": ["$", "$$", "percent", "when", "className", "facts"],
    "uploading.js": ["uploadBatches", "sendInBatches", "wireFileDrop"],
    "review.js": ["summarize", "criticalMessage", "domainWarning", "standing"],
}


def _scripts() -> dict[str, str]:
    return {p.name: p.read_text() for p in STATIC.glob("*.js")}


def _module_graph(page: str) -> set[str]:
    """Every static module ``page`` loads: its module scripts and, transitively, what they import."""
    html = (STATIC / page).read_text()
    todo = re.findall(r'<script type="module" src="/static/([\w.-]+)"></script>', html)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += re.findall(r'(?:from|import)\s+"\./([\w.-]+)"', (STATIC / name).read_text())
    return seen


def _definitions(name: str, scripts: dict[str, str]) -> list[str]:
    """The files that define ``name`` (a function, class, const or let), not those that only import or call it."""
    pattern = re.compile(r"(?:\bfunction\*?\s+|\b(?:const|let|var|class)\s+)" + re.escape(name) + r"(?![\w$])")
    return sorted(file for file, text in scripts.items() if pattern.search(text))


@pytest.mark.parametrize("page", ["index.html", "cases.html"])
def test_both_pages_load_the_shared_core(page):
    graph = _module_graph(page)
    assert CORE <= graph, f"{page} does not load {sorted(CORE - graph)}"
    assert {"review.js", "uploading.js"} <= graph
    assert "<script>" not in (STATIC / page).read_text()  # no inline script: the CSP allows 'self' only


def test_the_login_page_uses_the_same_api_client():
    assert "core-api.js" in _module_graph("login.html")


def test_each_shared_function_is_defined_once_in_its_home():
    scripts = _scripts()
    for home, names in HOMES.items():
        for name in names:
            assert _definitions(name, scripts) == [home], f"{name} must be defined in {home} only"


def test_only_the_api_client_calls_fetch():
    callers = sorted(file for file, text in _scripts().items() if re.search(r"(?<![\w.$])fetch\(", text))
    assert callers == ["core-api.js"]


def test_pages_read_screen_calls_from_the_record_not_flat_copies():
    """A cell's screens are read as ``cell.screens.<name>`` (value, flagged, detail), the record's one shape."""
    flat = field_names()
    assert {"pale", "out_of_scope", "cell_type"} <= set(flat)
    pattern = re.compile(r"\.(?:" + "|".join(map(re.escape, flat)) + r")(?![\w$])")
    readers = {file: pattern.findall(text) for file, text in _scripts().items() if pattern.search(text)}
    assert readers == {}
    assert "screens?.pallor_screen" in _scripts()["core-tiles.js"]
