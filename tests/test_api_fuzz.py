"""The HTTP API against a fuzzer: Schemathesis generates requests from the OpenAPI schema, valid and invalid, and runs
every one of its checks on each answer (the Python API's default set is the CLI's ``--checks all``): no input gives a
500, every status and content type is in the schema, schema-valid requests are accepted and invalid ones refused,
``Allow`` on a 405 names the path's methods, a call without the token is refused.

Two apps: the case store's (SQLite, an admin's bearer token, a case with one cell so that ids resolve) and the
--ephemeral one (a shared token). The upload routes (predict, heatmap, cells) take real cell images: Schemathesis's own
files are not images, so a PNG strategy of phantom cells stands for the image formats their schema names (random bytes
still come in the negative and coverage cases). The live-updates stream (``/events``) is left out: each call holds a
stream open until its time is up. Examples are few and derandomized: the whole module takes about a minute on 2 cores.

A schema-valid request may still be refused with 422 for a rule no schema can say, most of them the state of what it
names (REFUSED_BEYOND_THE_SCHEMA, each known by its message); any other refusal of one fails.
"""

from __future__ import annotations

import io

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from neunn.cases import open_store
from neunn.cases.users import add_user
from neunn.data.phantom import render_cell
from neunn.inference.predictor import Predictor
from neunn.serve import create_app
from neunn.serve.limits import ServeLimits

ADMIN, PASSWORD, SHARED_TOKEN = "chief", "chief-password", "fuzz-token"
UPLOADS = r"/(predict|heatmap|cells)$"
EVENTS = r"/events$"
# The only refusals (422) of a schema-valid request: rules the case store keeps that no schema can say, each known by
# its message. Any other 422 of a schema-valid request fails the test.
REFUSED_BEYOND_THE_SCHEMA = {
    "printable characters": "a sample ID with a character Python calls unprintable (format, private-use, unassigned "
                            "ones): the pattern refuses the control characters, no pattern lists all the others",
    "has no cells to be": "a case with no live cells has nothing to submit or sign (its state)",
    "of these cells": "a flagged or critical cell is never confirmed in bulk (its state)",
    "an amendment needs a reason": "a signed case's cell changes only with a reason (its state)",
    "in the future": "a communication is not recorded in the future (the schema has no clock)",
}
# Hypothesis budget: derandomized (the same cases on every run), no deadline (2 shared cores are slow at times).
FUZZ = dict(derandomize=True, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                   HealthCheck.function_scoped_fixture])


def _png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(render_cell("NEU", seed, 48)).save(out, format="PNG")
    return out.getvalue()


CELL_PNGS = [_png(seed) for seed in range(4)]
schemathesis.openapi.media_type("image/png", st.sampled_from(CELL_PNGS))


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.from_run(trained_run)


@pytest.fixture(scope="module", params=["cases", "ephemeral"])
def served(request, predictor, tmp_path_factory):
    """(app, the headers of its token) for the case store's app, with a case and a cell, and the --ephemeral one."""
    limits = ServeLimits(max_event_stream_seconds=1)
    if request.param == "ephemeral":
        yield create_app(predictor, token=SHARED_TOKEN, limits=limits), {"Authorization": f"Bearer {SHARED_TOKEN}"}
        return
    store = open_store(tmp_path_factory.mktemp("fuzz-store"))
    with store.transaction() as db:
        add_user(db, ADMIN, PASSWORD, role="admin")
    app = create_app(predictor, store=store, limits=limits, model_info={"run": "tiny"})
    client = TestClient(app)
    token = client.post("/api/v1/token", data={"username": ADMIN, "password": PASSWORD}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    case = client.post("/api/v1/cases", json={"sample_id": "S-FUZZ"}, headers=auth).json()
    cells = client.post(f"/api/v1/cases/{case['id']}/cells", files=[("files", ("cell.png", CELL_PNGS[0], "image/png"))],
                        headers=auth)
    assert cells.status_code == 200 and cells.json()["cells"], cells.text
    yield app, auth
    store.close()


@pytest.fixture(scope="module")
def api_schema(served):
    return schemathesis.openapi.from_asgi("/openapi.json", served[0])


@pytest.fixture(scope="module")
def auth(served) -> dict[str, str]:
    return served[1]


@pytest.fixture(autouse=True)
def _node_id(request):
    """Schemathesis 4.32's fixture-loaded schema renames the test node through ``Node._nodeid``, which pytest 9.2
    no longer has (its ``nodeid`` comes from ``_id``): give it the attribute, which then only names nothing."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


def call_and_validate(case, auth: dict[str, str]) -> None:
    """Send the case and run every check on the answer; a 422 for a rule no schema can say skips only the check that
    schema-valid data is accepted."""
    response = case.call(headers=auth)
    error = response.json().get("error", "") if response.status_code == 422 else ""
    beyond = any(message in error for message in REFUSED_BEYOND_THE_SCHEMA)
    case.validate_response(response, headers=auth,
                           excluded_checks=[schemathesis.checks.positive_data_acceptance] if beyond else None)


@schema.exclude(path_regex=f"{UPLOADS}|{EVENTS}").parametrize()
@settings(max_examples=25, **FUZZ)
def test_every_route_holds_against_the_fuzzer(case, auth):
    call_and_validate(case, auth)


@schema.include(path_regex=UPLOADS).parametrize()
@settings(max_examples=6, **FUZZ)
def test_upload_routes_hold_against_the_fuzzer(case, auth):
    call_and_validate(case, auth)
