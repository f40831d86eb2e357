"""Progress for people: one-line messages and progress bars on standard error, so standard output stays clean for
results; under torchrun only rank 0 speaks.

    say("dataset data/: 780 images in 2 classes")
    for item in progress(items, total=n, desc="evaluate", unit="img"): ...   # shows img/s and time left
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

from neunn.distributed import is_main_process

T = TypeVar("T")


def say(message: str) -> None:
    """Print a progress message on standard error (rank 0 only under torchrun)."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


def progress(items: Iterable[T], *, total: int | None, desc: str, unit: str = "img", enabled: bool = True) -> Iterator[T]:
    """``items`` with a progress bar on standard error: count, rate (``unit``/s) and time left when ``total`` is known."""
    yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                    disable=not (enabled and is_main_process()), mininterval=1.0)
