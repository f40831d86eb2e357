"""One call from a dataset to synthetic images of one class: train a GAN on its training split, then sample it.

    synthetic = augment_rare_class("phantom", class_name="GBI", out="demo/gan-GBI", n_samples=200,
                                   split_file="demo/run/splits.json")
    cfg = resolve_config(overrides=[f'synthetic=["{synthetic}:GBI"]'])   # then train as usual

Used by `neunn demo`. Running it again on the same folder continues an interrupted GAN and reuses finished samples.
"""

from __future__ import annotations

from pathlib import Path

from neunn.gan.config import resolve_gan_config
from neunn.gan.folder import GanDir
from neunn.gan.sample import sample_images
from neunn.gan.train import train_gan
from neunn.log import say


def augment_rare_class(
    data_dir: str | Path, *, class_name: str, out: str | Path, n_samples: int, split_file: str | Path | None = None,
    preset: str = "gan-cpu", overrides: list[str] | None = None, seed: int = 0, progress: bool = True,
) -> Path:
    """Train a GAN in OUT/gan on ``class_name``'s training-split images and write ``n_samples`` into OUT/synthetic,
    whose path is returned (a folder-per-class tree with manifest.json, ready for the ``synthetic`` config key)."""
    out = Path(out)
    gan, synthetic = GanDir(out / "gan"), out / "synthetic"
    if (synthetic / "manifest.json").is_file():
        say(f"reusing the synthetic {class_name} images in {synthetic}")
        return synthetic
    resume = gan.has_run()
    cfg = None if resume else resolve_gan_config(preset=preset, overrides=[*(overrides or []), f"seed={seed}"])
    say(f"training a GAN on the {class_name} training images into {gan.root}" + (" (resuming)" if resume else ""))
    train_gan(data_dir, gan.root, class_names=[class_name], cfg=cfg, split_file=None if resume else split_file,
              resume=resume, progress=progress)
    say(f"sampling {n_samples} synthetic {class_name} images into {synthetic}")
    sample_images(gan.root, n=n_samples, out=synthetic, seed=0, progress=progress)
    return synthetic
