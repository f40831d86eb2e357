"""Screen subcommands: ``neunn screen list RUN``, ``neunn screen fit KIND RUN ...`` and ``neunn screen remove RUN NAME``.

A screen (neunn.inference.screens) looks at every cell beside the model's own call and may flag it; each kind is
fitted on the run's own cells and kept in its folder. ``fit`` has one subcommand per kind that has something to fit,
with that kind's own options (out-of-domain, cell-type-gate, pallor, vacuoles, conformal).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command
from neunn.errors import NeunnError


def _cmd_list(args: argparse.Namespace) -> int:
    from neunn.inference.predictor import Predictor
    from neunn.inference.screens import SCREENS

    predictor = Predictor.from_run(args.run_dir)
    for name, kind in SCREENS.items():
        screen = predictor.screen(name)
        state = "none" if screen is None else ", ".join(f"{k}={v}" for k, v in _brief(screen.describe()).items())
        print(f"{name:15} {kind.title} (flags cells {_effect(kind.effect)}): {state}")
    return 0


def _effect(effect: str) -> str:
    return "out of domain" if effect == "out_of_domain" else "for review"


def _brief(described: dict) -> dict:
    """The short facts of a screen's description (no arrays, lists or nested records)."""
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in described.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool) or k == "scope"}


def _cmd_remove(args: argparse.Namespace) -> int:
    from neunn.inference.screens import SCREENS
    from neunn.rundir import RunDir

    if args.name not in SCREENS:
        raise NeunnError(f"There is no kind of screen '{args.name}'; the kinds are {', '.join(SCREENS)}.")
    run = RunDir(args.run_dir)
    run.require_trained()
    print(f"{SCREENS[args.name].title} of {args.run_dir} removed" if SCREENS[args.name].remove(run)
          else f"{args.run_dir} has no {SCREENS[args.name].title}")
    return 0


def _cmd_fit_out_of_domain(args: argparse.Namespace) -> int:
    from neunn.training.out_of_domain import fit_run_out_of_domain

    options = {k: v for k, v in (("method", args.method), ("quantile", args.quantile)) if v is not None}
    report = fit_run_out_of_domain(args.run_dir, checkpoint=args.checkpoint, device=args.device, **options)
    print(f"out-of-domain score ({report['method']}) fitted on {report['n_fit']} training cells; threshold "
          f"{report['threshold']:.4g} flags about {1 - report['quantile']:.0%} of in-domain cells; written to "
          f"{report['path']}")
    return 0


def _cmd_fit_gate(args: argparse.Namespace) -> int:
    from neunn.inference.screens.cell_type_gate import set_gate

    if not args.gate_run or not args.scope:
        raise NeunnError("Give the gate run and --scope CLASS[,CLASS] (the gate classes this run is for).")
    record = set_gate(args.run_dir, args.gate_run, scope=args.scope.split(","))
    print(f"cell-type gate set: cells that {record['run']} calls anything but {', '.join(record['scope'])} are "
          f"flagged out of domain by {args.run_dir} (predict, evaluate, serve)")
    return 0


def _finding_fitted(title: str, screen, chosen_on: str, then: str = "") -> str:
    """What a finding screen's fit chose, and on what, in one line."""
    fitted = screen.fitted_on
    return (f"{title} for '{screen.finding}': threshold {screen.threshold:.4f}, chosen on {chosen_on} of "
            f"{fitted['n']} training and validation cells ({fitted['n_positive']} {screen.finding}), where it flagged "
            f"{fitted['sensitivity']:.0%} of them and passed {fitted['specificity']:.0%} of the others; cells at or "
            f"over it that the model does not call '{screen.finding}' go to review{then}")


def _cmd_fit_pallor(args: argparse.Namespace) -> int:
    from neunn.training.pallor_fit import fit_pallor_screen

    screen = fit_pallor_screen(args.run_dir, finding=args.finding, target_sensitivity=args.target_sensitivity,
                               workers=args.workers)
    print(_finding_fitted("pallor screen", screen, "the pallor"))
    return 0


def _cmd_fit_vacuoles(args: argparse.Namespace) -> int:
    from neunn.training.finding_fit import fit_vacuole_finder

    finder = fit_vacuole_finder(args.run_dir, finding=args.finding, target_sensitivity=args.target_sensitivity,
                                workers=args.workers)
    print(_finding_fitted("vacuole finder", finder, "out-of-fold scores", ", with their spots marked"))
    return 0


def _cmd_fit_conformal(args: argparse.Namespace) -> int:
    from neunn.training.conformal_fit import fit_conformal

    sets = fit_conformal(args.run_dir, alpha=args.alpha, class_conditional=args.per_class, data_dir=args.data,
                         flag_budget=args.flag_budget, device=args.device)
    kind = "per class" if sets.class_conditional else "one for every class"
    print(f"conformal sets at α = {sets.alpha:g} fitted on {sets.fitted_on['n']} cells of {sets.fitted_on['source']} "
          f"(thresholds {kind}); a cell whose set is not one class goes to review")
    budget = sets.fitted_on.get("flag_budget")
    if budget:
        print(f"out-of-domain threshold {budget['out_of_domain_threshold']:.4g}: sets and review bin flag "
              f"{budget['share_sets_and_review']:.1%} of these cells, out of domain another "
              f"{budget['share_out_of_domain_only']:.1%}, {budget['share_flagged']:.1%} in all "
              f"(budget {budget['budget']:.0%})")
    return 0


def _add_finding_options(p: argparse.ArgumentParser, finding_help: str) -> None:
    """The run, the finding and the target sensitivity of a finding screen's fit, and its measuring threads."""
    p.add_argument("run_dir", type=Path)
    p.add_argument("--finding", required=True, metavar="CLASS", help=finding_help)
    p.add_argument("--target-sensitivity", type=float, default=0.9, metavar="P",
                   help="share of the finding's cells the threshold flags on the run's cells (default 0.9)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="threads measuring cells side by side (2)")


def _renamed(args: argparse.Namespace) -> int:
    raise NeunnError(f"`neunn {args.command}` is now `neunn screen` (list, fit out-of-domain|cell-type-gate|pallor, "
                     "remove); see `neunn screen --help`.")


def add_parsers(sub) -> None:
    """Register ``screen list|fit|remove``, and the old ``ood`` and ``pallor`` names, which say where they went."""
    screen = sub.add_parser("screen", help="a run's screens: what besides the model flags cells (out-of-domain score, "
                                           "cell-type gate, pallor)", description="a run's screens")
    screen_sub = screen.add_subparsers(dest="screen_command", required=True, metavar="COMMAND")
    p = add_command("list", screen_sub, "each kind of screen and what the run has of it", "neunn screen list runs/b7",
                    _cmd_list)
    p.add_argument("run_dir", type=Path)
    p = add_command("remove", screen_sub, "remove a run's screen of one kind", "neunn screen remove runs/vac "
                    "pallor_screen", _cmd_remove)
    p.add_argument("run_dir", type=Path)
    p.add_argument("name", help="the kind of screen (as `neunn screen list` names it)")

    fit = screen_sub.add_parser("fit", help="fit a screen on the run's own cells", description="fit a screen")
    fit_sub = fit.add_subparsers(dest="fit_command", required=True, metavar="KIND")
    p = add_command("out-of-domain", fit_sub, "fit (or refit) a run's out-of-domain score on its own training and "
                    "validation splits, without retraining", "neunn screen fit out-of-domain runs/b7",
                    _cmd_fit_out_of_domain)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--method", help="mahalanobis (default), knn, energy or max_logit")
    p.add_argument("--quantile", type=float,
                   help="share of validation cells under the threshold (default 0.95: about 5%% of in-domain cells "
                        "flagged)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")
    p = add_command("cell-type-gate", fit_sub, "put a cell-type gate in front of a run of one cell type: cells the "
                    "gate calls another type are flagged out of domain", "neunn screen fit cell-type-gate "
                    "runs/vacuoles runs/pbc --scope neutrophil", _cmd_fit_gate)
    p.add_argument("run_dir", type=Path)
    p.add_argument("gate_run", type=Path, nargs="?", help="a run trained on every cell type of the laboratory")
    p.add_argument("--scope", metavar="CLASS[,CLASS]", help="the gate's class(es) this run is for")
    p = add_command("pallor", fit_sub, "choose a run's pallor threshold for a target sensitivity on its own training "
                    "and validation cells", "neunn screen fit pallor runs/vacuoles --finding vacuolated",
                    _cmd_fit_pallor)
    _add_finding_options(p, "the class whose cells have a pale cytoplasm")

    p = add_command("vacuoles", fit_sub, "fit a run's vacuole finder (round pale spots located in the cytoplasm, "
                    "scored by a small linear model) on its own training and validation cells",
                    "neunn screen fit vacuoles runs/vacuoles --finding vacuolated", _cmd_fit_vacuoles)
    _add_finding_options(p, "the class of cells with vacuoles")

    p = add_command("conformal", fit_sub, "fit split-conformal prediction sets on the run's validation cells (or a "
                    "lab's own labelled cells): a cell whose set is not one class goes to review",
                    "neunn screen fit conformal runs/b7 --alpha 0.05", _cmd_fit_conformal)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--alpha", type=float, default=0.05, help="at most about this share of cells wrong and let "
                                                             "through (default 0.05)")
    p.add_argument("--per-class", action="store_true", help="a threshold per class (class-conditional coverage)")
    p.add_argument("--flag-budget", type=float, metavar="SHARE",
                   help="also set the out-of-domain threshold so that every flag together takes at most this share of "
                        "the calibration cells (e.g. 0.05); refused, naming the α that fits, when the sets alone "
                        "take more")
    p.add_argument("--data", type=Path, metavar="DIR", help="calibrate on these labelled cells (folder per class) "
                                                            "instead of the run's validation split")
    p.add_argument("--device", default="cpu")

    for old in ("ood", "pallor"):
        p = sub.add_parser(old, help=argparse.SUPPRESS, description="renamed: see `neunn screen --help`")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_renamed)
