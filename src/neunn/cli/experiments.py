"""Experiment subcommands: workflows that train and compare runs (``experiment rare-class``, ``experiment cv``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command, add_overrides, add_positive, int_at_least

GAN_PREFIX = "gan."  # experiment overrides of the GAN config: gan.steps=4000
# Every step of an experiment is skipped when its output exists, and a training run resumes from its last checkpoint.
EXPERIMENT_INTERRUPTED = "interrupted; the same command again continues the experiment where it stopped"


def _cmd_experiment_rare_class(args: argparse.Namespace) -> int:
    from neunn.errors import NeunnError
    from neunn.experiments.rare_class import ExperimentSettings, run_rare_class_experiment
    from neunn.experiments.rare_class_report import results_markdown

    gan_overrides = [o.removeprefix(GAN_PREFIX) for o in args.overrides if o.startswith(GAN_PREFIX)]
    overrides = [o for o in args.overrides if not o.startswith(GAN_PREFIX)]
    if args.folds is not None:
        return _rare_class_folds(args, overrides, gan_overrides)
    if args.keep is None:
        raise NeunnError("Give --keep N (training images of the class to keep on one split) or --folds K (the class "
                         "as it is, on K cross-validation folds).")
    if args.paste_from or args.tta or args.target_sensitivity is not None:
        raise NeunnError("--paste-from, --tta and --target-sensitivity go with --folds.")
    results = run_rare_class_experiment(ExperimentSettings(
        args.data_dir, args.out, class_name=args.class_name, keep=args.keep, seeds=args.seeds or [0, 1, 2],
        arms=args.arms, preset=args.preset, overrides=overrides, gan_preset=args.gan_preset,
        gan_overrides=gan_overrides, n_synthetic=args.n_synthetic, one_gan=args.one_gan, split_file=args.split_file,
        evaluate_gans=not args.no_gan_eval))
    print(results_markdown(results))
    print(f"results: {Path(args.out) / 'results.md'}, results.json and results.png")
    return 0


def _rare_class_folds(args: argparse.Namespace, overrides: list[str], gan_overrides: list[str]) -> int:
    from neunn.errors import NeunnError
    from neunn.experiments.rare_class_folds import FoldExperimentSettings, run_rare_class_folds
    from neunn.experiments.rare_class_folds_report import results_markdown

    if args.keep is not None or args.split_file or args.one_gan or len(args.seeds or [0]) > 1:
        raise NeunnError("With --folds the class is kept as it is and the folds are the repeats: drop --keep, "
                         "--split-file, --one-gan and give at most one --seeds (the fold seed).")
    results = run_rare_class_folds(FoldExperimentSettings(
        args.data_dir, args.out, class_name=args.class_name, folds=args.folds, seed=(args.seeds or [0])[0],
        arms=args.arms, preset=args.preset, overrides=overrides, gan_preset=args.gan_preset,
        gan_overrides=gan_overrides, n_synthetic=args.n_synthetic, paste_from=args.paste_from,
        target_sensitivity=args.target_sensitivity, tta=args.tta, evaluate_gans=not args.no_gan_eval))
    print(results_markdown(results))
    print(f"results: {Path(args.out) / 'results.md'} and results.json; each arm: {Path(args.out) / 'arms'}")
    return 0


def _cmd_experiment_cv(args: argparse.Namespace) -> int:
    from neunn.experiments.cross_validation import CrossValidationSettings, run_cross_validation
    from neunn.experiments.cross_validation_report import results_markdown

    results = run_cross_validation(CrossValidationSettings(
        args.data_dir, args.out, folds=args.folds, seed=args.seed, preset=args.preset, overrides=args.overrides,
        positive=args.positive, target_sensitivity=args.target_sensitivity, tta=args.tta))
    print(results_markdown(results))
    print(f"results: {Path(args.out) / 'results.md'} and results.json; pooled report: "
          f"{Path(args.out) / 'pooled' / 'report.html'}")
    return 0


def add_parsers(sub) -> None:
    """Register ``experiment rare-class`` and ``experiment cv``."""
    exp = sub.add_parser("experiment", help="experiments that answer the paper's questions on any dataset")
    exp_sub = exp.add_subparsers(dest="experiment_command", required=True, metavar="COMMAND")
    p = add_command("rare-class", exp_sub, "compare no augmentation, oversampling, GAN images (and painted vacuoles) "
                    "for a rare class: cut to N training images over seeds, or as it is on cross-validation folds",
                    "neunn experiment rare-class data/pbc --class basophil --keep 100 --out exp/basophil\n"
                    "  neunn experiment rare-class data/neutrophils --class vacuolated --folds 5 --arms a b c d "
                    "--paste-from normal --out exp/vac --target-sensitivity 0.9",
                    _cmd_experiment_rare_class, interrupted=EXPERIMENT_INTERRUPTED)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--class", dest="class_name", required=True, metavar="NAME")
    p.add_argument("--keep", type=int_at_least(1),
                   help="training images of the class to keep on one split (e.g. 60-150)")
    p.add_argument("--folds", type=int_at_least(2),
                   help="instead of --keep: the class as it is, every arm on the same K folds")
    p.add_argument("--out", type=Path, required=True, help="experiment folder (new, or one to continue)")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="training seeds on one split (default 0 1 2), or the one fold seed with --folds (default 0)")
    p.add_argument("--arms", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c", "d"],
                   help="a none, b oversampling, c GAN images, d vacuoles painted into --paste-from cells (--folds)")
    p.add_argument("--paste-from", metavar="CLASS", help="arm d: the class whose training cells get painted vacuoles")
    p.add_argument("--tta", action="store_true", help="with --folds: evaluate with the 8 flips/90° rotations averaged")
    p.add_argument("--target-sensitivity", type=float, metavar="P",
                   help="with --folds: each fold's threshold for sensitivity P on its validation split, applied to "
                        "its test cells")
    p.add_argument("--preset", help="classifier preset (default cpu-small)")
    p.add_argument("--gan-preset", help="GAN preset (default gan-128)")
    add_overrides(p, "classifier config (and, prefixed gan., GAN config)", "epochs=20 gan.steps=4000")
    p.add_argument("--n-synthetic", type=int_at_least(0), help="GAN images added in arm c (default: up to the median class size)")
    p.add_argument("--one-gan", action="store_true", help="train one GAN for all seeds instead of one per seed")
    p.add_argument("--split-file", type=Path, help="start from this splits.json instead of a new split")
    p.add_argument("--no-gan-eval", action="store_true", help="skip scoring the GAN samples with the arm-a classifier")

    p = add_command("cv", exp_sub, "stratified k-fold cross-validation: every image tested once, the folds' test "
                    "predictions pooled into one evaluation with 95 % intervals",
                    "neunn experiment cv data/neutrophils --folds 5 --out exp/cv --positive vacuolated "
                    "--target-sensitivity 0.9", _cmd_experiment_cv, interrupted=EXPERIMENT_INTERRUPTED)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="experiment folder (new, or one to continue)")
    p.add_argument("--folds", type=int_at_least(2), default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (training uses seed=...)")
    p.add_argument("--preset", help="classifier preset (default cpu-small)")
    add_positive(p)
    p.add_argument("--tta", action="store_true", help="evaluate each fold with the 8 flips/90° rotations averaged")
    add_overrides(p, "classifier config", "epochs=20 img_size=128")
