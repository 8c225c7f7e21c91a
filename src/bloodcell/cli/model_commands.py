"""`bloodcell weights import`, `bloodcell train` and `bloodcell evaluate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bloodcell.cli.common import (
    Parser,
    add_data_arg,
    add_export_arg,
    add_verbose_arg,
    data_dir,
    print_engine_checks,
)
from bloodcell.errors import BloodcellError
from bloodcell.run_dir import AUDIT_PNG, REPORT_MD, RunDir


def weights_import_cmd(args: argparse.Namespace) -> int:
    from bloodcell.models.registry import known_weights
    from bloodcell.models.weights import import_weights

    for path in args.files:
        target = import_weights(path, known_weights())
        print(f"{path}: hash verified, cached as {target}")
    return 0


def train_cmd(args: argparse.Namespace) -> int:
    from bloodcell.cli.train_options import given_settings
    from bloodcell.train.config import config_from_options
    from bloodcell.train.devices import is_rank_zero
    from bloodcell.train.job import train

    overrides = given_settings(args)
    config = None if args.resume and not overrides else config_from_options(args.recipe, overrides)
    data = data_dir(args.data) if (args.data or not args.resume) else None
    if not args.resume and not args.manifest:
        raise BloodcellError("--manifest FILE is required (make one with `bloodcell data split`)")
    try:
        run = train(config, data, args.manifest, args.out, resume=args.resume, verbose=args.verbose)
    except KeyboardInterrupt:
        print(
            f"bloodcell: interrupted; continue with `bloodcell train --resume --out {args.out}`",
            file=sys.stderr,
        )
        return 130
    if not is_rank_zero():  # under DDP every process gets here; one report is enough
        return 0
    print(
        f"run: {run}\nmodel: {run / 'model'}\nlog: {run / 'log.csv'}, curves: {run / 'curves.png'}"
    )
    if args.export:
        from bloodcell.export.check import export_engines

        print_engine_checks(export_engines(run, data_root=data, manifest=args.manifest))
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    from bloodcell.evaluation.split_metrics import summary_line
    from bloodcell.reporting.model_card import write_model_card
    from bloodcell.workflows.evaluate_job import evaluate_run

    data = data_dir(args.data) if args.data else None
    if args.robustness:
        from bloodcell.evaluation.robustness import check_conditions

        check_conditions(args.corruptions, args.severities)  # a typo fails before any work
        if Path(args.run).suffix.lower() == ".onnx":
            return robustness(args, data)  # evaluate_run needs the torch model
    m = evaluate_run(
        args.run, args.split, data_root=data, manifest=args.manifest, batch_size=args.batch_size
    )
    print(summary_line(m))
    c = m["clinical"]
    print(
        f"malignant vs benign: sensitivity {c['sensitivity']}, specificity {c['specificity']}; "
        f"ECE {m['ece']:.3f}"
    )
    print(f"report: {RunDir.of_model(m['model_dir']).eval_report(args.split)}")
    if args.ood:
        out_of_scope(args, data)
    rc = robustness(args, data) if args.robustness else 0
    print(f"model card: {write_model_card(m['model_dir'])}")
    return rc


def out_of_scope(args: argparse.Namespace, data: Path | None) -> None:
    """`evaluate --ood DIR...`: score the folders against the split and print the summary."""
    from bloodcell.evaluation.scope_folders import summary_lines
    from bloodcell.workflows.evaluate_job import evaluate_scope_folders

    r = evaluate_scope_folders(args.run, args.ood, args.split, data, args.manifest)
    for line in summary_lines(r):
        print(line)
    print(f"out-of-scope figures: {r['out_dir']}")


def robustness(args: argparse.Namespace, data: Path | None) -> int:
    """`evaluate --robustness`: run, print a summary and the output paths."""
    from bloodcell.evaluation.robustness import summary_lines
    from bloodcell.run_dir import ROBUSTNESS_CSV, ROBUSTNESS_PNG
    from bloodcell.workflows.evaluate_job import evaluate_robustness

    result = evaluate_robustness(
        args.run,
        args.split,
        corruptions=args.corruptions,
        severities=args.severities,
        data_root=data,
        manifest=args.manifest,
        batch_size=args.batch_size,
    )
    for line in summary_lines(result):
        print(line)
    print(f"robustness: {result['out_dir']}/{ROBUSTNESS_CSV}, {ROBUSTNESS_PNG}, {REPORT_MD}")
    return 0


def audit_cmd(args: argparse.Namespace) -> int:
    from bloodcell.reporting.audit_report import summary_lines
    from bloodcell.reporting.model_card import write_model_card
    from bloodcell.workflows.audit_job import audit_run

    data = data_dir(args.data) if args.data else None
    result = audit_run(args.run, args.split, data, args.manifest, seed=args.seed)
    for line in summary_lines(result):
        print(line)
    model = Path(result["model"])
    lone = model.suffix.lower() == ".onnx"  # written beside the model directory it sits in
    folder = RunDir.of_model(model.parent if lone else model)
    print(f"audit: {folder.audit_json(args.split)}, {AUDIT_PNG}")
    if not lone:
        print(f"model card: {write_model_card(result['model'])}")
    return 0


def severity_list(text: str) -> list[int] | None:
    """An argparse type: "1,2,3" -> [1, 2, 3] (sorted, no repeats); "" -> None (all)."""
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()}) or None
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes numbers like 1,2,3, not {text!r}") from None


def _add_weights(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser(
        "weights", help="manage ImageNet weights (offline import for air-gapped machines)"
    )
    wsub = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    imp = wsub.add_parser(
        "import",
        help="check a local torchvision weights file against its published hash and cache it",
        description="Check FILE against torchvision's published sha256 prefix (the hex digits in "
        "its file name, e.g. mobilenet_v2-b0353104.pth) and copy it into torch's hub cache "
        "($TORCH_HOME/hub/checkpoints), where training finds it without network access.",
    )
    imp.add_argument(
        "files", nargs="+", metavar="FILE", help="weights file(s), e.g. mobilenet_v2-b0353104.pth"
    )
    imp.set_defaults(func=weights_import_cmd)


def _train_options(p: Parser) -> None:
    from bloodcell.cli.train_options import add_recipe_option, add_train_options

    add_recipe_option(p, "reference")
    add_train_options(p)


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train",
        populate=_train_options,
        help="train a registered model on a split manifest (reference settings by default)",
        description="Train a model on the train split of MANIFEST, validating every epoch. "
        "Defaults are the reference recipe: mobilenet_v2 with its ImageNet backbone frozen and a "
        "Dense-512 head, 5 epochs, Adam lr 1e-3, batch 32, 224 px, no augmentation, seed 0. "
        "Writes into --out: train_config.json, manifest.csv (copy), checkpoints/ (best by val "
        "accuracy, last.ckpt every epoch), log.csv, curves.png and model/ (the weights that "
        "--checkpoint chooses, for `bloodcell evaluate` and `bloodcell.load`). After Ctrl-C or "
        "a killed process, `bloodcell train --resume --out RUN` continues from the last "
        "finished epoch.",
    )
    add_data_arg(tr)
    tr.add_argument(
        "--manifest", metavar="FILE", help="split manifest CSV (`bloodcell data split`)"
    )
    tr.add_argument("--out", metavar="RUN", required=True, help="run directory, e.g. runs/NAME")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN from checkpoints/last.ckpt with its saved settings",
    )
    add_export_arg(tr)
    add_verbose_arg(tr)
    tr.set_defaults(func=train_cmd)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on the val or test split and write a report",
        description="Predict one split of the run's manifest and report accuracy, per-class "
        "precision/recall/F1, macro-F1, balanced accuracy, Cohen's kappa, one-vs-rest ROC-AUC, "
        "malignant-vs-benign sensitivity and specificity, 95%% bootstrap intervals and the "
        "expected calibration error, the in-scope images the out-of-scope detector refused, and "
        "the conformal prediction sets' coverage and size at 90/95/99%%. Writes "
        "RUN/eval/SPLIT/{metrics.json,report.md,"
        "predictions.csv,*.png}, records the metrics in RUN/model/metrics.json and rewrites the "
        "model card RUN/model/README.md from them.",
    )
    ev.add_argument("run", metavar="RUN", help="run directory (or its model/ directory)")
    ev.add_argument(
        "--split", choices=("test", "val", "train"), default="test", help="default: test"
    )
    ev.add_argument(
        "--data", metavar="DIR", help="dataset folder (default: the one used for training)"
    )
    ev.add_argument(
        "--manifest", metavar="FILE", help="manifest (default: the one used for training)"
    )
    ev.add_argument("--batch-size", type=int, default=64, help="prediction batch size (default 64)")
    _add_evaluate_extras(ev)
    ev.set_defaults(func=evaluate_cmd)


def _add_evaluate_extras(ev: argparse.ArgumentParser) -> None:
    """The optional studies: robustness and out-of-scope folders."""
    ev.add_argument(
        "--robustness",
        action="store_true",
        help="also re-evaluate the split under simulated stain, light, focus, JPEG, resolution "
        "and noise changes at 3 severities; writes robustness.{json,csv,png} and a report "
        "section (RUN may then be an exported .onnx file)",
    )
    ev.add_argument(
        "--ood",
        nargs="+",
        metavar="DIR",
        help="also score folders of images unlike the training data: per folder the share "
        "refused, AUROC and FPR at 95%% TPR against the split; writes RUN/eval/ood/ "
        "(ood.json, ood_scores.png) and a report section",
    )
    ev.add_argument(
        "--corruptions",
        metavar="A,B",
        help="with --robustness: only these (darken, brighten, contrast, hue, stain, blur, "
        "jpeg, downscale, noise; default all)",
    )
    ev.add_argument(
        "--severities",
        type=severity_list,
        metavar="1,2,3",
        help="with --robustness: only these (default 1,2,3)",
    )


def _add_audit(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser(
        "audit",
        help="what the model looks at: white cells erased, alone, swapped; scale bar masked",
        description="The shortcut audit on one split: the white cells the finder marks are "
        "painted over with the background (nothing the label should come from is left), shown "
        "alone on grey, pasted on the cell-free background of an image of each other class "
        "(seeded), and the scale-bar corner is masked. Reports per variant the share refused "
        "(no white cell found, or out of scope) and the accuracy, and for swaps whether the "
        "label follows the cells or the background, per class. Writes RUN/eval/SPLIT/"
        "{audit.json,audit.png}, a report.md section, `audit` in RUN/model/metrics.json and "
        "the model card's 'What the model looks at'.",
    )
    au.add_argument("run", metavar="RUN", help="run directory (or its model/ directory)")
    au.add_argument("--split", choices=("test", "val"), default="test", help="default: test")
    au.add_argument(
        "--data", metavar="DIR", help="dataset folder (default: the one used for training)"
    )
    au.add_argument(
        "--manifest", metavar="FILE", help="manifest (default: the one used for training)"
    )
    au.add_argument("--seed", type=int, default=0, help="which backgrounds swaps use (default 0)")
    au.set_defaults(func=audit_cmd)


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_weights(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_audit(sub)
