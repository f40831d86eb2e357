"""Shared fixtures: a tiny phantom dataset and a tiny trained run, made once per test session on the CPU."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from neunn.training.config import resolve_config
from neunn.data.phantom import write_phantom_dataset
from neunn.training.setup import open_training_run
from neunn.training.train import train

PBC_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc-dev"
# A model and size small enough that a whole training run takes seconds on 2 cores.
TINY_OVERRIDES = ["model=resnet10t", "img_size=48", "batch_size=16", "epochs=2", "threads=1", "workers=1",
                  "warmup_epochs=0.5"]


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Seven phantom classes, 12 images each, at 48 px."""
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, per_class=12, seed=0, size=48)
    return root


@pytest.fixture(scope="session")
def trained_run(phantom_dir, tmp_path_factory) -> Path:
    """A run folder trained for two epochs on the phantom set."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(open_training_run(phantom_dir, out, cfg=resolve_config(preset="cpu-small", overrides=TINY_OVERRIDES), progress=False))
    return out


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server named by $NEUNN_TEST_POSTGRES (.ci/run starts one), dropped
    afterwards. Without the variable the test is skipped here and fails in CI."""
    import psycopg
    from sqlalchemy.engine import make_url

    server = os.environ.get("NEUNN_TEST_POSTGRES")
    if not server:
        if os.environ.get("CI"):
            pytest.fail("NEUNN_TEST_POSTGRES is not set: .ci/run starts PostgreSQL and sets it")
        pytest.skip("set NEUNN_TEST_POSTGRES=postgresql://user:pass@host/postgres to test on PostgreSQL")
    name = f"neunn_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(server).set(drivername="postgresql")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[tuple[Path, str | None]]:
    """(store folder, database URL) of an empty case store, on SQLite (URL None: the default) and on PostgreSQL."""
    if request.param == "sqlite":
        yield tmp_path / "store", None
    else:
        with postgres_database() as url:
            yield tmp_path / "store", url


@pytest.fixture
def case_store(store_url):
    """An open, migrated, empty case store on each database."""
    from neunn.cases import open_store

    store = open_store(store_url[0], db_url=store_url[1])
    yield store
    store.close()
