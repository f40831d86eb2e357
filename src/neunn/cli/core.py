"""Core subcommands: data check, data phantom, train, evaluate, predict, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neunn import BACKENDS
from neunn.cli.common import add_command, add_overrides, add_policy, add_positive, int_at_least
from neunn.errors import NeunnError

# Ctrl-C in `neunn train`: the folder keeps what was written, and --resume goes on from the last checkpoint (or from
# epoch 1 when none was written yet).
TRAIN_INTERRUPTED = "interrupted; a training run continues from its last checkpoint with --resume"


def _cmd_data_check(args: argparse.Namespace) -> int:
    from neunn.data.scan import scan_dataset

    scan = scan_dataset(args.dir, progress=True)
    print(scan.summary())
    scan.require_usable()
    return 0


def _cmd_data_phantom(args: argparse.Namespace) -> int:
    from neunn.data.phantom import write_phantom_dataset

    counts = write_phantom_dataset(args.out, per_class=args.per_class, seed=args.seed, size=args.size, progress=True)
    print(f"wrote {sum(counts.values())} synthetic phantom images ({args.per_class} per class) to {args.out}")
    return 0


_SELECTED_BY = {"macro_f1": ("val_macro_f1", "macro-F1"), "loss": ("val_loss", "loss"), "auc": ("val_auc", "ROC AUC"),
                "ap": ("val_ap", "average precision")}


def _best_epoch_text(result) -> str:
    """'best validation macro-F1 0.912 at epoch 7', or how the epoch was chosen when nothing was validated."""
    if not result.best_val:
        return f"no validation split: the last epoch's weights ({result.best_epoch}) kept"
    if result.select_by == "last":
        return f"the last epoch's weights kept (validation macro-F1 {result.best_val['val_macro_f1']:.3f})"
    key, label = _SELECTED_BY[result.select_by]
    value = result.best_val.get(key)
    return f"best validation {label} {'n/a' if value is None else f'{value:.3f}'} at epoch {result.best_epoch}"


def _cmd_train(args: argparse.Namespace) -> int:
    from neunn.distributed import is_main_process
    from neunn.training.config import resolve_config
    from neunn.training.setup import open_training_run, removed_unless_trained
    from neunn.training.train import train

    if args.resume and (args.preset or args.config or args.overrides or args.synthetic or args.add):
        raise NeunnError("--resume continues with the run's saved config, added folders included; do not pass "
                         "--preset, --config, --synthetic, --add or overrides.")
    for key, folders in (("synthetic", args.synthetic), ("added_data", args.add)):
        if folders:
            args.overrides.append(f"{key}=[{', '.join(repr(str(f)) for f in folders)}]")
    cfg = None if args.resume else resolve_config(preset=args.preset, config_file=args.config, overrides=args.overrides)
    with removed_unless_trained(args.out, resume=args.resume):
        result = train(open_training_run(args.data_dir, args.out, cfg, resume=args.resume,
                                         split_file=args.split_file))
    if not is_main_process():  # under torchrun, rank 0 reports
        return 0
    print(f"trained {result.epochs} epochs in {result.seconds / 60:.1f} min; {_best_epoch_text(result)}; "
          f"checkpoints in {result.run_dir / 'checkpoints'}")
    print(f"next: neunn evaluate {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from neunn.evaluation.evaluate import evaluate_run, format_robustness_table
    from neunn.evaluation.metric_results import MetricResults
    from neunn.evaluation.metrics import format_metrics_table
    from neunn.evaluation.rare_class import format_rare_class
    from neunn.rundir import RunDir

    metrics = evaluate_run(args.run_dir, data_dir=args.data, split=args.split, checkpoint=args.checkpoint,
                           device=args.device, tta=args.tta, perturb=args.perturb, backend=args.backend,
                           review_threshold=args.review_threshold, critical=args.critical, positive=args.positive,
                           target_sensitivity=args.target_sensitivity)
    print(format_metrics_table(MetricResults.from_json(metrics), warnings=metrics["warnings"]))
    if metrics["rare_class"]:
        print(format_rare_class(metrics["rare_class"]))
    kept, calib = metrics["selective"]["at_threshold"], metrics["selective"]["calibration"]
    print(f"review threshold {kept['threshold']:.2f}: {kept['coverage']:.1%} of cells classified, at accuracy "
          + ("n/a" if kept["accuracy"] is None else f"{kept['accuracy']:.1%}")
          + f"; ECE {calib['ece_before']:.3f} before calibration, {calib['ece_after']:.3f} after")
    ood = metrics["out_of_domain"]
    if ood["available"]:
        print(f"out of domain ({ood['method']}): {ood['share_flagged']:.1%} of cells flagged; wrong and unflagged "
              f"(neither flag): {ood['wrong_and_unflagged_share']:.1%} of cells")
    if "robustness" in metrics:
        print(format_robustness_table(metrics["robustness"]))
    out = RunDir(Path(args.run_dir)).evaluation(args.split, args.backend, checkpoint=args.checkpoint, tta=args.tta).root
    print(f"report: {out / 'report.html'}  (metrics.json and predictions.csv beside it)")
    return 0


def _check_writable(out: Path) -> None:
    """Fail in one sentence, before any prediction, when ``out`` cannot be written: a folder, no permission, ...

    The file is opened for appending (so nothing in it changes) and, when this made it, removed again.
    """
    if out.is_dir():
        raise NeunnError(f"Cannot write {out}: it is a folder; give a file name for --out, e.g. "
                         f"{out / 'predictions.csv'}.")
    existed = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8"):
            pass
        if not existed:
            out.unlink()
    except OSError as exc:
        raise NeunnError(f"Cannot write {out} ({exc.strerror or exc}); choose another --out.") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from neunn.distributed import is_main_process
    from neunn.inference.predict_files import predict_to_file
    from neunn.rundir import RunDir

    if args.out is not None and is_main_process():
        RunDir(args.run_dir).require_trained()  # a mistyped run creates nothing
        _check_writable(args.out)
    summary = predict_to_file(args.run_dir, args.inputs, out=args.out, fmt=args.format, device=args.device,
                              batch_size=args.batch_size, backend=args.backend,
                              review_threshold=args.review_threshold, critical=args.critical)
    if not is_main_process():  # under torchrun, rank 0 merged every rank's rows and reports
        return 0
    counts = ", ".join(f"{c} {n}" for c, n in sorted(summary.counts.items()))
    print(f"predicted {summary.n_ok} file(s) ({counts}); {len(summary.failed)} could not be read"
          + (f"; output in {args.out}" if args.out else ""), file=sys.stderr)
    if summary.critical:
        print(f"CRITICAL FINDING: {len(summary.critical)} cell(s) classified as a critical class, e.g. "
              f"{summary.critical[0]}; review them.", file=sys.stderr)
    if summary.out_of_domain:
        print(f"{len(summary.out_of_domain)} cell(s) are outside the model's experience (out_of_domain), e.g. "
              f"{summary.out_of_domain[0]}; review them, and validate the model on this laboratory's cells.",
              file=sys.stderr)
    if summary.n_ok == 0:
        raise NeunnError("No input file could be processed.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from neunn.experiments.demo import run_demo
    from neunn.evaluation.metric_results import MetricResults
    from neunn.evaluation.metrics import format_metrics_table

    metrics = run_demo(Path(args.out), per_class=args.per_class, gan=not args.no_gan)
    print("NeuNN demo on PHANTOM data (synthetic images, not real cells); held-out test split. These figures show that")
    print("the pipeline learns the phantom classes; they are not the paper's task, whose figures are shown for reference.")
    print(format_metrics_table(MetricResults.from_json(metrics), warnings=metrics["warnings"]))
    print(f"report: {Path(args.out) / 'run' / 'eval' / 'test' / 'report.html'}")
    return 0


def _evaluation_to_compare(folder: Path, split: str, tta: bool) -> Path:
    """A predictions.csv itself, a cross-validation's pooled out-of-fold predictions, or a run's evaluation of
    ``split``."""
    from neunn.rundir import RunDir, pooled_evaluation

    if folder.is_file():
        return folder
    pooled = pooled_evaluation(folder).predictions
    if (folder / "experiment.json").is_file():
        if not pooled.is_file():
            raise NeunnError(f"{folder} is an experiment without pooled predictions yet; finish it (run the same "
                             "`neunn experiment cv` command again) first.")
        return pooled
    path = RunDir(folder).evaluation(split, tta=tta).predictions
    if not path.is_file():
        raise NeunnError(f"{folder} has no evaluation of the {split} split{' with --tta' if tta else ''}; "
                         f"run `neunn evaluate {folder} --split {split}{' --tta' if tta else ''}` first.")
    return path


def _cmd_compare(args: argparse.Namespace) -> int:
    from neunn.evaluation.paired import correct_by_cell, paired_difference, paired_ranking_by_cell, scores_by_cell

    evaluations = [_evaluation_to_compare(folder, args.split, args.tta) for folder in (args.first, args.second)]
    print(f"A: {evaluations[0]}\nB: {evaluations[1]}")
    result = paired_difference(*(correct_by_cell(path) for path in evaluations))
    ci = result["difference_ci95"]
    print(f"{result['n']} cells: {args.first} {100 * result['first_accuracy']:.1f} %, {args.second} "
          f"{100 * result['second_accuracy']:.1f} %; difference (B - A) {100 * result['difference']:+.1f} points, "
          f"paired 95 % interval [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]")
    print(f"only A right on {result['only_first_right']} cells, only B right on {result['only_second_right']}; "
          f"exact McNemar p = {result['mcnemar_p']:.3g}")
    print(f"reading: {_verdict(ci)}")
    if args.positive:
        ranking = paired_ranking_by_cell(*(scores_by_cell(path, args.positive) for path in evaluations))
        print(f"'{args.positive}' against the rest ({ranking['positives']} of {ranking['n']} cells):")
        for key, name in (("roc_auc", "ROC AUC"), ("average_precision", "average precision")):
            figure, ci = ranking[key], ranking[key]["difference_ci95"]
            print(f"  {name}: A {100 * figure['first']:.1f}, B {100 * figure['second']:.1f}; difference (B - A) "
                  f"{100 * figure['difference']:+.1f} points, paired 95 % interval [{100 * ci['low']:+.1f}, "
                  f"{100 * ci['high']:+.1f}]: {_verdict(ci)}")
    return 0


def _verdict(ci: dict[str, float]) -> str:
    return ("B is better" if ci["low"] > 0 else "A is better" if ci["high"] < 0 else
            "no difference shown: the interval includes zero")


def add_parsers(sub) -> None:
    """Register the core subcommands on the top-level subparsers."""
    data = sub.add_parser("data", help="inspect datasets or render phantom data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = add_command("check", data_sub, "scan a folder-per-class dataset and list every problem", "neunn data check data/neutrophils",
                _cmd_data_check)
    p.add_argument("dir", type=Path)
    p = add_command("phantom", data_sub, "render synthetic phantom neutrophils of the seven classes",
                "neunn data phantom phantom/ --per-class 200 --seed 0 --size 128", _cmd_data_phantom)
    p.add_argument("out", type=Path)
    p.add_argument("--per-class", type=int_at_least(1), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int_at_least(1), default=128)

    p = add_command("train", sub, "train a classifier on a folder-per-class dataset",
                "neunn train data/neutrophils --out runs/b7 --preset neunn-b7 epochs=80", _cmd_train,
                interrupted=TRAIN_INTERRUPTED)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="run folder (created; must be new unless --resume)")
    p.add_argument("--preset", help="a shipped preset: cpu-small (default), cpu-robust, cpu-robust-160, neunn-b7, ...")
    p.add_argument("--config", type=Path, help="a YAML file of config keys, applied over the preset")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--split-file", type=Path, help="reuse another run's splits.json so both test on the same images")
    p.add_argument("--synthetic", action="append", metavar="DIR[:CLASS]",
                   help="synthetic images (DIR/<CLASS>/...) added to the training split only; repeatable")
    p.add_argument("--add", action="append", metavar="DIR",
                   help="more labelled cells (DIR/<CLASS>/..., e.g. reviewed cases) added to the training split only; "
                        "the split of DATA stays as without it; repeatable")
    add_overrides(p)

    p = add_command("evaluate", sub, "score a trained run on a split and write metrics, predictions and a report",
                "neunn evaluate runs/b7 --split test", _cmd_evaluate)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--split", default="test", help="train, val, test, or all (every image of --data)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/90° rotations of each cell")
    p.add_argument("--perturb", action="append", metavar="NAME=VALUE",
                   help="also score under a perturbation (hue, saturation, brightness, stain, blur, jpeg, scale), "
                        "e.g. --perturb blur=1.5; 'standard' runs a suite; repeatable")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="score with this engine; onnx and onnx-int8 write to RUN_DIR/eval/<split>-<backend>/")
    add_policy(p)
    add_positive(p)

    p = add_command("compare", sub, "two runs (or two cross-validations) scored on the same cells: the accuracy "
                    "difference with a paired 95 % interval and McNemar's test; with --positive, the paired ROC AUC "
                    "and average precision differences of a rare class",
                    "neunn compare exp/baseline exp/recipe --positive vacuolated", _cmd_compare)
    p.add_argument("first", type=Path, metavar="A", help="a run folder, a `neunn experiment cv` folder (its pooled "
                                                          "out-of-fold predictions), or a predictions.csv")
    p.add_argument("second", type=Path, metavar="B")
    p.add_argument("--positive", metavar="CLASS", help="also compare how the two rank this class against the rest")
    p.add_argument("--split", default="test", help="for run folders: the evaluation to compare (eval/<split>, from "
                                                   "neunn evaluate; 'all' for an external --data folder)")
    p.add_argument("--tta", action="store_true", help="compare the --tta evaluations")

    p = add_command("predict", sub, "classify image files or folders with a trained run",
                "neunn predict runs/b7 cells/ --out predictions.csv", _cmd_predict)
    p.add_argument("run_dir", type=Path)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    p.add_argument("--out", type=Path, help="output file (default: standard output; required under torchrun)")
    p.add_argument("--format", default="csv", choices=("csv", "json"))
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto; under torchrun cuda and auto "
                                                    "give each process its own GPU")
    p.add_argument("--batch-size", type=int_at_least(1), default=64, metavar="N", help="images per batch (default 64)")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="onnx: ONNX Runtime on the CPU, using RUN_DIR/export/best.onnx (exported on first use); "
                        "onnx-int8: its int8 model RUN_DIR/export/best.int8.onnx (quantized on first use, checked "
                        "against float32), the fastest on a CPU")
    add_policy(p)

    p = add_command("demo", sub, "run the whole pipeline on phantom data on this CPU (minutes, nothing downloaded)",
                "neunn demo --out neunn-demo", _cmd_demo,
                interrupted="interrupted; the same command again continues the demo where it stopped")
    p.add_argument("--out", type=Path, default=Path("neunn-demo"))
    p.add_argument("--per-class", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-gan", action="store_true", help="skip the GAN augmentation of the rare class (faster)")
