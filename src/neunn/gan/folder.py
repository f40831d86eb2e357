"""The GAN folder: what ``neunn gan train`` writes and every other ``neunn gan`` command reads.

    GAN_DIR/gan.yaml                     resolved GAN config
    GAN_DIR/gan.json                     facts: dataset, classes, the training images used (path + SHA-256), image size
    GAN_DIR/splits.json                  the dataset split; reuse it with `neunn train --split-file` so nothing leaks
    GAN_DIR/log.jsonl                    losses every few steps
    GAN_DIR/checkpoints/last.*           G, D, EMA generator and both optimisers, for --resume
    GAN_DIR/checkpoints/generator.*      the EMA generator alone, with what sampling needs in its metadata
    GAN_DIR/samples/step_NNNNNN.png      periodic sample grids (seeds 0..15 of each class)
    GAN_DIR/quality/                     quality.json, quality.html and figures from `neunn gan evaluate`

Opening, facts and log handling come from :class:`neunn.rundir.RunFolder`, the base of classifier runs too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neunn.errors import NeunnError
from neunn.rundir import RunFolder


@dataclass(frozen=True)
class GanDir(RunFolder):
    """Paths inside one GAN folder."""

    kind = "GAN run"
    config_name = "gan.yaml"
    info_name = "gan.json"

    @property
    def generator(self) -> Path:
        """Stem of the EMA generator checkpoint."""
        return self.checkpoints / "generator"

    @property
    def last(self) -> Path:
        """Stem of the full training-state checkpoint."""
        return self.checkpoints / "last"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def quality(self) -> Path:
        return self.root / "quality"

    def require_generator(self) -> Path:
        """The generator's .safetensors path, or a one-sentence error when there is none."""
        if not self.root.is_dir():
            raise NeunnError(f"GAN folder {self.root} does not exist.")
        path = self.generator.with_suffix(".safetensors")
        if not path.is_file():
            raise NeunnError(f"{self.root} holds no trained generator (checkpoints/generator.safetensors); "
                             "train one with `neunn gan train`.")
        return path
