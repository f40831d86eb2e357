"""The review station for pathologists: a web page and an HTTP API over one trained run.

    from neunn.serve import create_app, serve_run, ServeLimits
    serve_run("runs/b7", host="127.0.0.1", port=8000, backend="onnx", token="s3cret")   # what `neunn serve` does
    app = create_app(Predictor.from_run("runs/b7"), token=None)                          # for tests or another server

Modules: ``app`` (routes), ``uploads`` (multipart read into memory under limits), ``archive`` (zips of a sample's
cells), ``results`` (per-cell results, sample summary, critical alert), ``limits``, ``server`` (uvicorn), and
``static/`` (the page: plain HTML, CSS and JavaScript). See docs/serving.md.
"""

from neunn.serve.app import create_app
from neunn.serve.limits import ServeLimits
from neunn.serve.server import serve_run

__all__ = ["ServeLimits", "create_app", "serve_run"]
