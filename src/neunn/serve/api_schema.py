"""The OpenAPI schema as one app serves it: the routes' own, with the serving model's classes named where a request
takes one (a cell's decision label, a heatmap's target), which the module-level routers cannot know.

    app.openapi = served_schema(app, classes=predictor.classes, cases=store is not None)

The server checks the same (422 for a label or target that is not a class); a cell classified by an earlier model
takes that model's classes, which the case's models list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from neunn.cases.casework import PERSON_CALLS


def served_schema(app: FastAPI, *, classes: Sequence[str], cases: bool) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi``: FastAPI's schema (made once), with the classes filled in."""
    made = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = made()  # FastAPI keeps it in app.openapi_schema
            _heatmap_targets(schema, classes)
            if cases:
                _decision_labels(schema, classes)
        return app.openapi_schema

    return openapi


def _heatmap_targets(schema: dict[str, Any], classes: Sequence[str]) -> None:
    for parameter in schema["paths"]["/api/v1/heatmap"]["post"].get("parameters", []):
        if parameter["name"] == "target":
            parameter["schema"] = {"type": "string", "enum": list(classes)}
            parameter["description"] = "the class to explain (default: the predicted one)"


def _decision_labels(schema: dict[str, Any], classes: Sequence[str]) -> None:
    label = schema["components"]["schemas"]["Decision"]["properties"]["label"]
    label["enum"] = [*classes, *PERSON_CALLS]
    label["description"] = ("one of the classes of the model that classified the cell (the serving model's are "
                            "listed), or a person's call: " + " or ".join(PERSON_CALLS))
