"""GAN augmentation of rare classes: train a small GAN on one class's training images, sample seed-named synthetic
images for `neunn train --synthetic`, measure their quality and novelty, and test whether they help.

    from neunn.gan import augment_rare_class, train_gan, sample_images, evaluate_gan

Modules: config (GanConfig, presets gan-*), networks (G and D), diffaug (DiffAugment), train (training loop),
sample (seed-named samples), quality (FID, KID, PRDC, nearest neighbours), evaluate + report (`neunn gan evaluate`),
pipeline (augment_rare_class, for `neunn demo`). The rare-class experiment, which trains classifiers with and without
GAN images, is a workflow above this package: :mod:`neunn.experiments.rare_class`.
"""

from neunn.gan.evaluate import evaluate_gan
from neunn.gan.pipeline import augment_rare_class
from neunn.gan.sample import sample_images
from neunn.gan.train import train_gan

__all__ = ["augment_rare_class", "evaluate_gan", "sample_images", "train_gan"]
