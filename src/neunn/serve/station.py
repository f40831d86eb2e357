"""The predictor as the review station uses it: limits, zips expanded, per-cell results and summaries, Grad-CAM.

    station = Station(Predictor.from_run("runs/b7"), ServeLimits())
    status, body = station.score(uploads, include_images=False)      # what POST /api/v1/predict answers
    cells = station.classify(uploads)                                  # (upload, part index, in zip, prediction|None)
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

from PIL import Image

from neunn import NEUTROPHIL_CLASSES, __version__
from neunn.data.image_io import UnreadableImage
from neunn.errors import NeunnError
from neunn.inference.predictor import Prediction, Predictor
from neunn.serve.api_errors import ApiError
from neunn.serve.archive import ZipRefused, expand_zip, is_zip
from neunn.serve.limits import ServeLimits
from neunn.serve.results import (
    CLASS_NAMES,
    OOD_WARNING_MIN_CELLS,
    OOD_WARNING_SHARE,
    cell_result,
    error_result,
    error_status,
    normal_class,
    sample_summary,
)
from neunn.serve.uploads import Upload, UploadRefused

_SCORE_BATCH = 64
_OVERLAY_MAX_SIDE = 1024
_BROWSER_IMAGES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
                   (b"BM", "image/bmp"))


def _browser_data_url(data: bytes) -> str | None:
    """The bytes as a data: URL when a browser can show them (zip entries the page cannot read itself)."""
    mime = next((m for magic, m in _BROWSER_IMAGES if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}" if mime else None


class Station:
    """The predictor with what serving adds: limits, the expansion of zips, summaries and a lazily built Grad-CAM."""

    def __init__(self, predictor: Predictor, limits: ServeLimits) -> None:
        self.predictor, self.limits = predictor, limits
        self._cam: Any = None
        self._cam_lock = threading.Lock()

    def expand(self, uploads: list[Upload]) -> list[tuple[Upload, int, bool]]:
        """Every cell of the request, zips expanded in place: (cell, index of its file part, whether from a zip)."""
        cells: list[tuple[Upload, int, bool]] = []
        budget = self.limits.max_unzipped_bytes
        for index, upload in enumerate(uploads):
            if upload.error is not None or not is_zip(upload.data):
                cells.append((upload, index, False))
                continue
            try:
                entries = expand_zip(upload.name, upload.data, max_cells=self.limits.max_files, max_bytes=budget,
                                     max_entry_bytes=self.limits.max_file_bytes)
            except ZipRefused as exc:
                cells.append((Upload(upload.name, error=str(exc), status=exc.status), index, False))
                continue
            budget -= sum(len(e.data) for e in entries)
            cells.extend((entry, index, True) for entry in entries)
            upload.data = b""  # the entries hold the content now
        if len(cells) > self.limits.max_files:
            raise UploadRefused(413, f"Too many files in one request: {len(cells)} cells, at most "
                                     f"{self.limits.max_files} (zip contents included).")
        return cells

    def classify(self, uploads: list[Upload]) -> list[tuple[Upload, int, bool, Prediction | None]]:
        """Every cell of the request with its prediction (None when the file was refused before the model saw it)."""
        cells = self.expand(uploads)
        readable = [(u.name, u.data) for u, _, _ in cells if u.error is None]
        predictions = iter([p for i in range(0, len(readable), _SCORE_BATCH)
                            for p in self.predictor.predict_sources(readable[i : i + _SCORE_BATCH])])
        return [(u, index, in_zip, next(predictions) if u.error is None else None) for u, index, in_zip in cells]

    def score(self, uploads: list[Upload], include_images: bool) -> tuple[int, dict[str, Any]]:
        """The JSON body (and its status) for a predict request: per-cell results, summary and alert."""
        results = []
        for upload, index, in_zip, prediction in self.classify(uploads):
            if prediction is None:
                result = error_result(upload.name, upload.error, upload.status)
            else:
                result = cell_result(prediction, self.predictor.classes)
                if include_images and in_zip and result["status"] == 200:
                    result["image"] = _browser_data_url(upload.data)
            results.append({**result, "upload": index, "in_zip": in_zip})
        classified = [r for r in results if r["status"] == 200]
        summary = sample_summary([(r["label"], r["needs_review"], r["out_of_domain"]) for r in classified],
                                 classes=self.predictor.classes,
                                 critical_classes=self.predictor.policy.critical_classes)
        body = {"n_files": len(results), "n_failed": len(results) - len(classified), "results": results,
                "summary": summary}
        return (200 if classified else results[0]["status"]), body

    def gradcam(self) -> Any:
        with self._cam_lock:
            if self._cam is None:
                from neunn.inference.heatmap import GradCam  # imported here: Captum loads only when a heatmap is asked for

                self._cam = GradCam.for_predictor(self.predictor) or False
            return self._cam or None

    def heatmap(self, upload: Upload, target: str | None) -> tuple[bytes, str]:
        """A PNG Grad-CAM overlay of one image, for ``target`` or else the predicted class, and the class used."""
        from neunn.inference.heatmap import overlay_png

        cam = self.gradcam()
        if cam is None:
            raise ApiError(501, "Heatmaps are not available: this backend has no PyTorch weights to explain.")
        try:
            pixels = self.predictor.load_pixels(upload.data)  # the one decode, prepared as the model was trained
        except UnreadableImage as exc:
            raise ApiError(error_status(str(exc)), str(exc), name=upload.name) from None
        with Image.open(io.BytesIO(upload.data)) as header:  # the overlay keeps the upload's shape: size, no decode
            width, height = header.size
        if target is None:
            target = self.predictor.classes[int(self.predictor.probabilities(pixels.unsqueeze(0))[0].argmax())]
        try:
            heat = cam.heat(pixels, target=target)
        except NeunnError as exc:
            raise ApiError(422, str(exc)) from None
        scale = min(1.0, _OVERLAY_MAX_SIDE / max(width, height))
        return overlay_png(heat, size=(max(1, round(width * scale)), max(1, round(height * scale)))), target

    def model_card(self, extra: dict[str, Any]) -> dict[str, Any]:
        """What ``GET /api/v1/model`` tells: classes, architecture, calibration, thresholds, metrics and limits."""
        p, meta = self.predictor, self.predictor.meta
        order = [c for c in NEUTROPHIL_CLASSES if c in p.classes]
        order += [c for c in p.classes if c not in NEUTROPHIL_CLASSES]
        return {
            "arch": meta.get("arch"), "img_size": p.img_size, "classes": p.classes, "display_order": order,
            "class_names": {c: CLASS_NAMES.get(c, c) for c in p.classes}, "backend": p.backend,
            "critical_classes": sorted(p.policy.critical_classes), "review_threshold": p.policy.review_threshold,
            "policy": p.policy.as_dict(),
            "normal_class": normal_class(p.classes),
            "out_of_domain": ({k: v for k, v in p.ood.as_dict().items() if k != "classes_fitted"}
                              if p.ood is not None else None),
            "ood_warning": {"min_cells": OOD_WARNING_MIN_CELLS, "min_share": OOD_WARNING_SHARE},
            **p.describe_screens(),
            "calibration": {"temperature": p.temperature, **meta.get("calibration", {})},
            "checkpoint": {"kind": meta.get("kind"), "epoch": meta.get("epoch"),
                           "neunn_version": meta.get("neunn_version")},
            "validation": meta.get("val", {}), **extra, "limits": self.limits.as_dict(), "server_version": __version__,
        }
