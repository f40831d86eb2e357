"""``python -m dying_rank RANK EPOCH neunn-args...``: run ``neunn`` where process RANK dies (os._exit) in epoch EPOCH.

For the test of a training process that dies under torchrun; not part of NeuNN.
"""

import os
import sys

from neunn.training import train as train_module
from neunn.cli import main

rank, epoch = int(sys.argv[1]), int(sys.argv[2])
real_augment = train_module.augment_batch
calls = {"n": 0}


def augment_then_die(*args, **kwargs):
    calls["n"] += 1
    steps = int(os.environ.get("DYING_RANK_STEPS", "1"))
    if int(os.environ["RANK"]) == rank and calls["n"] > (epoch - 1) * steps:
        os._exit(3)
    return real_augment(*args, **kwargs)


train_module.augment_batch = augment_then_die
sys.exit(main(sys.argv[3:]))
