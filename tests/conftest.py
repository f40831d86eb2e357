"""Shared fixtures and helpers: a tiny phantom dataset and a tiny trained run (made once per test session on the CPU),
the real data's folders (tests skip cleanly without them), a tiny GAN, a browser and a loopback server for the pages,
and the synthetic cases of the metric tests."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neunn.data.phantom import render_cell, write_phantom_dataset
from neunn.data.scan import ImageRecord
from neunn.gan.config import resolve_gan_config
from neunn.gan.train import train_gan
from neunn.training.config import resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # read only: its images are never copied
PBC_DEV = SHARED_DATA / "pbc-dev"
NORMAL_NEUTROPHILS = SHARED_DATA / "neutro-vac-dev" / "normal"
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


# ---- real and phantom neutrophil crops -------------------------------------------------------------------------------
def real_neutrophils(count: int = 3) -> list[np.ndarray]:
    """The first real normal neutrophils of neutro-vac-dev (the test is skipped without them)."""
    if not NORMAL_NEUTROPHILS.is_dir():
        pytest.skip(f"{NORMAL_NEUTROPHILS} is not here")
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(NORMAL_NEUTROPHILS.glob("*.jpg"))[:count]]


def phantom_neutrophils(count: int = 3) -> list[np.ndarray]:
    return [render_cell("NEU", seed, 128) for seed in range(count)]


@pytest.fixture(params=["real", "phantom"])
def neutrophil_crops(request) -> list[np.ndarray]:
    """Three neutrophil crops: real ones when the shared data is here, and phantom ones."""
    return real_neutrophils() if request.param == "real" else phantom_neutrophils()


def image_records(counts: dict[str, int]) -> list[ImageRecord]:
    """Scanner records of made-up images, ``counts`` per class (for split and fold tests)."""
    return [ImageRecord(f"{c}/{i:04d}.jpg", c, f"{c}-{i}", 10, 10, "RGB", None) for c, n in counts.items()
            for i in range(n)]


# ---- a tiny GAN ------------------------------------------------------------------------------------------------------
TINY_GAN = ["resolution=32", "z_dim=16", "width=8", "d_width=8", "max_channels=32", "batch_size=4", "steps=6",
            "threads=1", "workers=1", "min_images=5", "checkpoint_every=3", "sample_every=3", "log_every=2"]


def tiny_gan_config(*extra: str):
    """The tiny GAN config, with more overrides."""
    return resolve_gan_config(preset="gan-cpu", overrides=[*TINY_GAN, *extra])


def train_tiny_gan(data_dir: Path, out: Path) -> Path:
    """A tiny GAN trained for 6 steps on the phantom GBI class."""
    train_gan(data_dir, out, class_names="GBI", cfg=tiny_gan_config(), progress=False)
    return out


# ---- the pages: the system's Chromium and a loopback server ---------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# ---- synthetic cases for the metric tests ---------------------------------------------------------------------------
def make_case(seed: int, n_classes: int, n: int = 300, *, never_predicted: int | None = None,
              absent: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels and label-correlated softmax probabilities, optionally a class never predicted or absent."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(n_classes, 0.7))
    labels = rng.choice(n_classes, size=n, p=prior)
    if absent is not None:
        labels[labels == absent] = (absent + 1) % n_classes
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[labels]
    if never_predicted is not None:
        logits[:, never_predicted] -= 20.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return labels, probs / probs.sum(axis=1, keepdims=True)


CASES = [
    dict(seed=0, n_classes=3),
    dict(seed=1, n_classes=5, never_predicted=2),
    dict(seed=2, n_classes=7, absent=4),
    dict(seed=3, n_classes=8, never_predicted=0, absent=5),
    dict(seed=4, n_classes=4, n=40),
]
