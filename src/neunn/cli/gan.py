"""GAN subcommands: gan train, gan sample, gan evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command, add_overrides, int_at_least, positive_number
from neunn.errors import NeunnError


def _cmd_gan_train(args: argparse.Namespace) -> int:
    from neunn.gan.config import resolve_gan_config
    from neunn.gan.train import train_gan

    if args.resume and (args.preset or args.overrides):
        raise NeunnError("--resume continues with the GAN's saved config; only --steps may change it.")
    if not args.resume and not args.class_names:
        raise NeunnError("Name the class to train the GAN on with --class (repeat it for a class-conditional GAN).")
    cfg = None if args.resume else resolve_gan_config(preset=args.preset, overrides=args.overrides)
    result = train_gan(args.data_dir, args.out, class_names=args.class_names, cfg=cfg, split_file=args.split_file,
                       resume=args.resume, steps=args.steps)
    counts = ", ".join(f"{c} {n}" for c, n in result.images_per_class.items())
    print(f"trained the GAN to step {result.steps} ({result.seconds / 60:.1f} min this time) on {counts} training "
          f"images; sample grids in {result.gan_dir / 'samples'}")
    print(f"next: neunn gan sample {result.gan_dir} -n 500 --out synthetic/{next(iter(result.images_per_class))}")
    return 0


def _cmd_gan_sample(args: argparse.Namespace) -> int:
    from neunn.gan.sample import sample_images

    result = sample_images(args.gan_dir, n=args.n, out=args.out, seed=args.seed, class_name=args.class_name,
                           device=args.device)
    print(f"wrote {len(result.seeds)} synthetic {result.class_name} images (seeds {result.seeds[0]}-{result.seeds[-1]}) "
          f"to {result.out / result.class_name}, with {result.out / 'manifest.json'}")
    print(f"next: neunn train DATA --out RUN --synthetic {result.out}:{result.class_name}")
    return 0


def _cmd_gan_evaluate(args: argparse.Namespace) -> int:
    from neunn.gan.evaluate import evaluate_gan, summarise

    report = evaluate_gan(args.gan_dir, classifier_run=args.classifier, data_dir=args.data, class_name=args.class_name,
                          n_samples=args.n, seed=args.seed, device=args.device, near_copy_ratio=args.near_copy_ratio,
                          inception_weights=args.inception_weights, out=args.out)
    for name, row in summarise(report)["classes"].items():
        held = row["heldout_agreement"]
        print(f"{name}: FID {row['fid']:.2f}, KID {row['kid']:.4f}, precision {row['precision']:.3f}, recall "
              f"{row['recall']:.3f}, density {row['density']:.3f}, coverage {row['coverage']:.3f}; "
              f"{100 * row['agreement']:.1f}% classified as {name}"
              + (f" (held-out real: {100 * held:.1f}%)" if held is not None else "")
              + f"; near-copies {row['near_copies_pixel']} (pixel) / {row['near_copies_feature']} (feature) "
              f"of {row['n_synthetic']}")
    folder = Path(args.out) if args.out else Path(args.gan_dir) / "quality"
    print(f"report: {folder / 'quality.html'}  (quality.json beside it)")
    return 0


def add_parsers(sub) -> None:
    """Register `gan train|sample|evaluate`."""
    gan = sub.add_parser("gan", help="GAN augmentation of rare classes: train, sample, evaluate")
    gan_sub = gan.add_subparsers(dest="gan_command", required=True, metavar="COMMAND")

    p = add_command("train", gan_sub, "train a GAN on the training-split images of a class",
                    "neunn gan train data/neutrophils --class GBI --out gan/GBI --preset gan-128", _cmd_gan_train,
                    interrupted="interrupted; a GAN continues from its last checkpoint with --resume")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--class", dest="class_names", action="append", metavar="NAME",
                   help="class to synthesise; repeat it for one class-conditional GAN over several classes")
    p.add_argument("--out", type=Path, required=True, help="GAN folder (created; must be new unless --resume)")
    p.add_argument("--preset", help="gan-128 (default, GPU), gan-256 (GPU) or gan-cpu (64 px, for a CPU)")
    add_overrides(p, "GAN config", "steps=4000 resolution=64")
    p.add_argument("--split-file", type=Path, help="use this splits.json (e.g. a classifier run's) instead of a new split")
    p.add_argument("--resume", action="store_true", help="continue the GAN in --out from its last checkpoint")
    p.add_argument("--steps", type=int_at_least(1), help="total training steps (with --resume: train on to this many)")

    p = add_command("sample", gan_sub, "write seed-named synthetic images of a trained GAN, marked synthetic",
                    "neunn gan sample gan/GBI -n 500 --out synthetic/GBI --seed 0", _cmd_gan_sample)
    p.add_argument("gan_dir", type=Path)
    p.add_argument("-n", type=int_at_least(1), required=True, help="number of images (seeds SEED to SEED+N-1)")
    p.add_argument("--out", type=Path, required=True, help="new or empty folder: OUT/<CLASS>/seed_S.png + manifest.json")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="class to sample (class-conditional GANs)")
    p.add_argument("--device", default="cpu")

    p = add_command("evaluate", gan_sub, "score a GAN's samples: FID/KID, precision/recall, agreement, memorisation",
                    "neunn gan evaluate gan/GBI --classifier runs/b7", _cmd_gan_evaluate)
    p.add_argument("gan_dir", type=Path)
    p.add_argument("--classifier", type=Path, required=True, help="a trained NeuNN run folder (its features are used)")
    p.add_argument("--data", type=Path, help="dataset folder (default: the one the GAN was trained on)")
    p.add_argument("-n", type=int_at_least(1),
                   help="samples per class (default: the number of training images, at least 100)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the samples scored (default 0)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="score only this class")
    p.add_argument("--near-copy-ratio", type=positive_number, default=0.5,
                   help="flag a sample closer to a training image than this fraction of real spacing (default 0.5)")
    p.add_argument("--inception-weights", type=Path, help="local timm inception_v3 .safetensors for an extra FID")
    p.add_argument("--out", type=Path, help="report folder (default GAN_DIR/quality)")
    p.add_argument("--device", default="cpu")
