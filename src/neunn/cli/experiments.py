"""Experiment subcommands: workflows that train and compare runs (``experiment rare-class``, ``experiment cv``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command, add_overrides, add_positive

GAN_PREFIX = "gan."  # experiment overrides of the GAN config: gan.steps=4000


def _cmd_experiment_rare_class(args: argparse.Namespace) -> int:
    from neunn.experiments.rare_class import run_rare_class_experiment
    from neunn.experiments.rare_class_report import results_markdown

    gan_overrides = [o.removeprefix(GAN_PREFIX) for o in args.overrides if o.startswith(GAN_PREFIX)]
    overrides = [o for o in args.overrides if not o.startswith(GAN_PREFIX)]
    results = run_rare_class_experiment(
        args.data_dir, args.out, class_name=args.class_name, keep=args.keep, seeds=args.seeds, arms=args.arms,
        preset=args.preset, overrides=overrides, gan_preset=args.gan_preset, gan_overrides=gan_overrides,
        n_synthetic=args.n_synthetic, one_gan=args.one_gan, split_file=args.split_file,
        evaluate_gans=not args.no_gan_eval)
    print(results_markdown(results))
    print(f"results: {Path(args.out) / 'results.md'}, results.json and results.png")
    return 0


def _cmd_experiment_cv(args: argparse.Namespace) -> int:
    from neunn.experiments.cross_validation import run_cross_validation
    from neunn.experiments.cross_validation_report import results_markdown

    results = run_cross_validation(args.data_dir, args.out, folds=args.folds, seed=args.seed, preset=args.preset,
                                   overrides=args.overrides, positive=args.positive,
                                   target_sensitivity=args.target_sensitivity, tta=args.tta)
    print(results_markdown(results))
    print(f"results: {Path(args.out) / 'results.md'} and results.json; pooled report: "
          f"{Path(args.out) / 'pooled' / 'report.html'}")
    return 0


def add_parsers(sub) -> None:
    """Register ``experiment rare-class`` and ``experiment cv``."""
    exp = sub.add_parser("experiment", help="experiments that answer the paper's questions on any dataset")
    exp_sub = exp.add_subparsers(dest="experiment_command", required=True, metavar="COMMAND")
    p = add_command("rare-class", exp_sub, "cut a class to N training images and compare no augmentation, "
                    "oversampling and GAN images over seeds",
                    "neunn experiment rare-class data/pbc --class basophil --keep 100 --out exp/basophil",
                    _cmd_experiment_rare_class)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--class", dest="class_name", required=True, metavar="NAME")
    p.add_argument("--keep", type=int, required=True, help="training images of the class to keep (e.g. 60-150)")
    p.add_argument("--out", type=Path, required=True, help="experiment folder (new, or one to continue)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.add_argument("--preset", help="classifier preset (default cpu-small)")
    p.add_argument("--gan-preset", help="GAN preset (default gan-128)")
    add_overrides(p, "classifier config (and, prefixed gan., GAN config)", "epochs=20 gan.steps=4000")
    p.add_argument("--n-synthetic", type=int, help="GAN images added in arm c (default: up to the median class size)")
    p.add_argument("--one-gan", action="store_true", help="train one GAN for all seeds instead of one per seed")
    p.add_argument("--split-file", type=Path, help="start from this splits.json instead of a new split")
    p.add_argument("--no-gan-eval", action="store_true", help="skip scoring the GAN samples with the arm-a classifier")

    p = add_command("cv", exp_sub, "stratified k-fold cross-validation: every image tested once, the folds' test "
                    "predictions pooled into one evaluation with 95 % intervals",
                    "neunn experiment cv data/neutrophils --folds 5 --out exp/cv --positive vacuolated "
                    "--target-sensitivity 0.9", _cmd_experiment_cv)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="experiment folder (new, or one to continue)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (training uses seed=...)")
    p.add_argument("--preset", help="classifier preset (default cpu-small)")
    add_positive(p)
    p.add_argument("--tta", action="store_true", help="evaluate each fold with the 8 flips/90° rotations averaged")
    add_overrides(p, "classifier config", "epochs=20 img_size=128")
