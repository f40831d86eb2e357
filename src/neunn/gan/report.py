"""The self-contained HTML page of ``neunn gan evaluate``: headline table, sample grid, memorisation evidence.

    write_quality_report(gan_dir / "quality", report, images)   # quality.html + samples_<C>.png + closest_pairs_<C>.png

Figures are PNG files beside the page and also inlined in it as data URIs, so the page opens offline and alone.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch
from matplotlib.figure import Figure

from neunn.atomic import write_atomic, write_text_atomic
from neunn.gan.sample import image_grid
from neunn.evaluation.report import figure_to_png

GRID_SAMPLES = 32
PAIR_SCALE = 2
CLOSEST_PAIRS = 8
JUDGE_MIN_RECALL = 0.5  # below this held-out recall the classifier is no judge of the samples

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GAN quality: {{ name }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
img{image-rendering:pixelated;max-width:100%}.note{color:#555;font-size:.9em}</style></head><body>
<h1>GAN quality: {{ name }}</h1>
<p class="note">Synthetic images from {{ report.gan_dir }} (step {{ report.step }}, {{ report.resolution }} px), compared
with the real training images the GAN saw, in the penultimate-layer features of the classifier
{{ report.classifier_run }} ({{ report.classifier_arch }}, {{ report.classifier_img_size }} px).
The reference column puts held-out real images of the class (validation + test split) through the same measurements:
it is what a perfect generator would score.{% if not report.same_split %} <b>The classifier was trained on another split
than the GAN, so held-out images may be in its training set.</b>{% endif %}</p>
{% for cls in classes %}
<h2>{{ cls.name }}</h2>
{% if cls.judge_note %}<p><b>{{ cls.judge_note }}</b></p>{% endif %}
<table><tr><th>Measure</th><th>Synthetic</th><th>Reference (held-out real)</th></tr>
{% for row in cls.rows %}<tr><td>{{ row[0] }}</td><td>{{ row[1] }}</td><td>{{ row[2] }}</td></tr>
{% endfor %}</table>
<p class="note">Near-copy: a sample whose distance to its nearest training image is below {{ cls.threshold }} × that
training image's distance to its own nearest other training image (pixel space: RMS difference of {{ cls.pixel_size }} px
thumbnails, over the 8 flips/rotations of each training image).</p>
<h3>Samples (seeds {{ cls.seeds }})</h3><img src="{{ cls.samples_uri }}" alt="samples">
<h3>Closest pairs in pixel space</h3>
<p class="note">Top row: the synthetic samples nearest to a training image; bottom row: that training image (in its
stored orientation; the match may be to a flip or rotation of it).
Ratios: {{ cls.pair_ratios }}.</p><img src="{{ cls.pairs_uri }}" alt="closest pairs">
<h3>Distance to the nearest training image, relative to real spacing</h3><img src="{{ cls.hist_uri }}" alt="histogram">
{% endfor %}
<p class="note">NeuNN {{ report.neunn_version }}, {{ report.created }}.</p></body></html>
"""


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "\u2014"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _spread(memo: dict[str, Any]) -> str:
    return f"{_fmt(memo.get('median_ratio'), 2)} / {_fmt(memo.get('min_ratio'), 2)}"


def _rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    ref = r.get("reference", {})
    memo = r["memorisation"]
    held = memo.get("heldout", {})
    kid = f"{1000 * r['kid']:.2f} ± {1000 * r['kid_sd']:.2f}"
    rows = [("Images compared", f"{r['n_synthetic']} (vs {r['n_train']} training)", f"{r['n_heldout']}"),
            ("FID (classifier features)", _fmt(r["fid"], 2), _fmt(ref.get("fid"), 2)),
            ("KID × 1000", kid, _fmt(1000 * ref["kid"], 2) if ref else "\u2014")]
    rows += [(k.capitalize(), _fmt(r["prdc"][k]), _fmt(ref.get("prdc", {}).get(k))) for k in
             ("precision", "recall", "density", "coverage")]
    rows.append(("Classified as the intended class", _fmt(r["agreement"]), _fmt(ref.get("agreement"))))
    for space in ("pixel", "feature"):
        ours, theirs = memo["synthetic"][space], held.get(space, {})
        rows.append((f"Near-copies ({space} space)", f"{ours['near_copies']} of {r['n_synthetic']}",
                     f"{theirs['near_copies']} of {r['n_heldout']}" if theirs else "\u2014"))
        rows.append((f"Median / min distance ratio ({space})", _spread(ours), _spread(theirs) if theirs else "\u2014"))
    if r["inception"]["fid"] is not None:
        rows.append(("FID (Inception-v3 features)", _fmt(r["inception"]["fid"], 2), "\u2014"))
    return rows


def _judge_note(name: str, r: dict[str, Any]) -> str | None:
    """A warning when the classifier does not recognise real held-out cells of the class either."""
    held = r.get("reference", {}).get("agreement")
    if held is None or held >= JUDGE_MIN_RECALL:
        return None
    return (f"The classifier recognises only {100 * held:.0f}% of the held-out real {name} cells, so its agreement "
            "on the samples says little; judge them with a classifier trained on all of the class's training images.")


def _closest_pairs(r: dict[str, Any], fake_small: torch.Tensor, train_small: torch.Tensor) -> tuple[bytes, list[float]]:
    pixel = r["memorisation"]["synthetic"]["pixel"]
    ratios = np.array([np.inf if v is None else v for v in pixel["ratio"]])
    order = np.argsort(ratios, kind="stable")[:CLOSEST_PAIRS]
    top = fake_small[order]
    bottom = train_small[[pixel["nearest"][i] for i in order]]
    grid = image_grid(torch.cat([top, bottom]), columns=len(order))
    grid = grid.resize((grid.width * PAIR_SCALE, grid.height * PAIR_SCALE))
    return _png_bytes(grid), [float(ratios[i]) for i in order]


def _histogram(r: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    memo = r["memorisation"]
    for name, label in (("synthetic", "synthetic"), ("heldout", "held-out real")):
        if name in memo:
            values = [v for v in memo[name]["pixel"]["ratio"] if v is not None]
            ax.hist(values, bins=30, alpha=0.6, density=True, label=label)
    ax.axvline(memo["near_copy_ratio"], color="k", linestyle="--", label="near-copy threshold")
    ax.set_xlabel("nearest-training-image distance / its own nearest-real distance (pixel space)")
    ax.legend(fontsize=8)
    return figure_to_png(fig)


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_quality_report(folder: Path, report: dict[str, Any], images: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write quality.html and its figures into ``folder``; return the page's path."""
    classes = []
    for name, r in report["classes"].items():
        samples_png = _png_bytes(image_grid(images[name]["fake"][:GRID_SAMPLES]))
        pairs_png, pair_ratios = _closest_pairs(r, images[name]["fake_small"], images[name]["train_small"])
        for stem, png in ((f"samples_{name}", samples_png), (f"closest_pairs_{name}", pairs_png)):
            write_atomic(folder / f"{stem}.png", lambda tmp, png=png: tmp.write_bytes(png))
        classes.append({"name": name, "rows": _rows(r), "judge_note": _judge_note(name, r), "threshold": r["memorisation"]["near_copy_ratio"],
                        "pixel_size": images[name]["fake_small"].shape[-1],
                        "seeds": f"{r['seeds'][0]}\u2013{min(r['seeds'][1], r['seeds'][0] + GRID_SAMPLES - 1)}",
                        "samples_uri": _uri(samples_png), "pairs_uri": _uri(pairs_png),
                        "pair_ratios": ", ".join(f"{v:.2f}" for v in pair_ratios), "hist_uri": _uri(_histogram(r))})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(_TEMPLATE).render(name=", ".join(report["classes"]), report=report, classes=classes)
    path = folder / "quality.html"
    write_text_atomic(path, html)
    return path
