"""Using a trained model: `bloodcell calibrate`, `predict`, `explain` and `export`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bloodcell.cli.common import add_data_arg, add_engine_arg, print_engine_checks


def calibrate_cmd(args: argparse.Namespace) -> int:
    from bloodcell.evaluation.calibrate import calibrate_run, set_scope_acceptance
    from bloodcell.models.conformal import check_coverage
    from bloodcell.models.saved import update_config
    from bloodcell.models.scope_detector import check_acceptance

    check_coverage(args.coverage)  # a typo fails before the model runs
    if args.ood_acceptance is not None:
        check_acceptance(args.ood_acceptance)
    s = calibrate_run(args.run, data_root=args.data, manifest=args.manifest, coverage=args.coverage)
    print(
        f"temperature {s['temperature']:.3f} fitted on {s['n']} validation images: "
        f"ECE {s['ece_before']:.4f} -> {s['ece_after']:.4f}, "
        f"NLL {s['nll_before']:.4f} -> {s['nll_after']:.4f}; "
        f"prediction sets at {s['coverage']:.0%} coverage"
    )
    if args.ood_acceptance is not None:
        ood = set_scope_acceptance(args.run, args.ood_acceptance)
        print(
            f"out-of-scope threshold {ood['threshold']:.4f} "
            f"({ood['acceptance']:.1%} of validation images in scope)"
        )
    if args.uncertain_threshold is not None:
        update_config(args.run, uncertain_threshold=args.uncertain_threshold)
        print(f"uncertain threshold set to {args.uncertain_threshold}")
    return 0


def predict_cmd(args: argparse.Namespace) -> int:
    from bloodcell.predict import format_totals, run_predict
    from bloodcell.predict.predict_job import open_for_files

    backend = open_for_files(args.model, args.engine)
    print(f"engine: {backend.engine} ({backend.path})", file=sys.stderr)
    totals = run_predict(
        backend,
        args.paths,
        fmt=args.format,
        out=args.out,
        batch_size=args.batch_size,
        tta=args.tta,
        group=args.group_by_folder,
        uncertain_threshold=args.uncertain_threshold,
        resume=args.resume,
        workers=args.workers,
        parquet_part_rows=args.parquet_part_rows,
        cell_guard=args.cell_guard,
        shard=args.shard,
    )
    print(format_totals(totals), file=sys.stderr)
    empty_shard = args.shard is not None and totals.n_files == 0  # more shards than files
    return 0 if totals.n_files > totals.n_errors or totals.n_skipped or empty_shard else 1


def _shard(text: str) -> Any:
    """`--shard I/N` as a `data.files.Shard` (imported here: `--help` loads no PIL)."""
    from bloodcell.data.files import Shard
    from bloodcell.errors import BloodcellError

    try:
        return Shard.parse(text)
    except BloodcellError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def explain_cmd(args: argparse.Namespace) -> int:
    from bloodcell.predict.explain_files import run_explain

    results = run_explain(args.model, args.images, args.out)
    for image, png, error in results:
        print(f"{image}: {'error: ' + error if error else png}")
    return 0 if results and all(e is None for _, _, e in results) else 1


def export_cmd(args: argparse.Namespace) -> int:
    from bloodcell.export.onnx import export_onnx

    if args.check:
        from bloodcell.export.check import export_engines

        print_engine_checks(export_engines(args.model, args.data, args.manifest, progress=True))
        return 0
    s = export_onnx(
        args.model,
        out=args.out,
        quantize=args.quantize,
        method=args.quantize_method,
        data_root=args.data,
        manifest=args.manifest,
    )
    print(f"wrote {s['path']} ({s.get('int8_bytes', s['fp32_bytes']) / 1e6:.1f} MB)")
    if "quantization" in s:
        print(
            f"fp32 model: {s['fp32']} ({s['fp32_bytes'] / 1e6:.1f} MB); "
            f"int8 by {s['quantization']['method']} quantisation"
        )
    acc = s.get("accuracy")
    if acc:
        print(
            f"{acc['split']} accuracy ({acc['n']} images): fp32 {acc['accuracy_fp32']:.4f}, "
            f"int8 {acc['accuracy_int8']:.4f} (change {acc['accuracy_change']:+.4f}), "
            f"label agreement {acc['agreement']:.4f}"
        )
    elif args.quantize:
        print(
            "int8 accuracy change not measured: the run's test split was not found "
            "(pass --data DIR)"
        )
    return 0


def _threshold_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--uncertain-threshold",
        type=float,
        default=None,
        metavar="P",
        help=f"{what} flag predictions whose calibrated top probability is below P as "
        "uncertain (model default 0.8: below it, more than one answer in five is "
        "expected to be wrong)",
    )


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit temperature scaling and prediction sets on the validation split",
        description="Fit the temperature T that makes confidence honest (minimum NLL on the "
        "validation split), store it with the model, and print ECE before and after. Also fits "
        "the conformal prediction sets (the classes that remain possible, at --coverage) and "
        "can move the out-of-scope threshold (--ood-acceptance).",
    )
    p.add_argument("run", metavar="RUN", help="run or model directory")
    add_data_arg(p)
    p.add_argument("--manifest", default=None, help="split manifest (default: the run's)")
    p.add_argument(
        "--coverage",
        type=float,
        default=0.95,
        metavar="P",
        help="how often a prediction set must hold the true class (default 0.95)",
    )
    p.add_argument(
        "--ood-acceptance",
        type=float,
        default=None,
        metavar="P",
        help="move the out-of-scope threshold so this share of validation images is in scope "
        "(the detector's default is 0.99, set at training)",
    )
    _threshold_arg(p, "also store a new default threshold:")
    p.set_defaults(func=calibrate_cmd)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images and folders (streams, with a progress bar)",
        description="Predict the class of each image (folders are searched recursively). "
        "Unreadable files become error rows; the rest goes on. Streams: folders of any size "
        "are walked lazily, decoded by --workers threads and written batch by batch, so memory "
        "does not grow with the number of files. For large archives write CSV or Parquet "
        "(--out results.csv or --out results.parquet, a folder of part files) and, after an "
        "interruption, rerun the same command with --resume. To split an archive between "
        "the jobs of a scheduler's array, give each --shard I/N and its own --out (see "
        "docs/distributed.md). Schemas: see `python -m pydoc bloodcell.predict`.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory, model directory or .onnx file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json", "jsonl", "parquet"),  # predict.writers.FORMATS
        default=None,
        help="output format (default: from --out's suffix, else table); jsonl: JSON Lines, "
        "one prediction object per line, written as it goes",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write here instead of stdout (.csv, .json, .jsonl, or .parquet: a folder of "
        "part-NNNNN.parquet files)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip images already in --out (CSV, JSON Lines or Parquet only; not with JSON or "
        "--group-by-folder) and append the rest: continues a killed run with "
        "nothing lost and nothing done twice",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="predict only shard I of N (counted from 1, e.g. 2/8): the I-th of N contiguous, "
        "near-equal parts of the sorted file list, so that the shards' outputs, put one after "
        "the other in shard order, are the rows of one run over all the files. Give each "
        "shard its own --out; works with --resume and every format, not with "
        "--group-by-folder. An empty shard (more shards than files) exits 0",
    )
    _add_predict_tuning(p)
    add_engine_arg(p)
    _threshold_arg(p, "")
    p.add_argument(
        "--no-cell-guard",
        dest="cell_guard",
        action="store_false",
        help="answer images in which the white-cell finder sees no white cell too (by default "
        "they are refused: out_of_scope true, reason 'no white cell found')",
    )
    p.set_defaults(func=predict_cmd)


def _add_predict_tuning(p: argparse.ArgumentParser) -> None:
    """How `predict` runs: threads, Parquet parts, batch size, TTA, folder totals."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="image-decoding threads (default: cores, at most 4)",
    )
    p.add_argument(
        "--parquet-part-rows",
        type=int,
        default=4096,
        metavar="N",
        help="rows per Parquet part file: a kill loses at most the unfinished part "
        "(default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument(
        "--tta",
        action="store_true",
        help="average over the 8 flips/90-degree rotations (8x slower)",
    )
    p.add_argument(
        "--group-by-folder",
        action="store_true",
        help="add per-folder counts per class and mean probabilities",
    )


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="write Grad-CAM heatmap overlays (PNG) for images",
        description="Grad-CAM on the torch model (not .onnx): one PNG per image, titled with "
        "the prediction and its calibrated confidence.",
    )
    p.add_argument("model", metavar="MODEL", help="run or model directory (not .onnx)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    p.set_defaults(func=explain_cmd)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX (fp32, optionally int8)",
        description="Write model.onnx (dynamic batch; class names, preprocessing, temperature "
        "and uncertain threshold in its metadata). With --quantize int8 also model.int8.onnx, "
        "and its accuracy change on the test split when the data is found.",
    )
    p.add_argument("model", metavar="MODEL", help="run or model directory")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--quantize", choices=("int8",), default=None)
    p.add_argument(
        "--quantize-method",
        choices=("auto", "static", "dynamic"),
        default="auto",
        help="auto: static with train-split calibration images if found, else dynamic",
    )
    p.add_argument("--out", default=None, metavar="FILE", help="default: in the model directory")
    p.add_argument(
        "--check",
        action="store_true",
        help="write both model.onnx and model.int8.onnx into the model directory, check them "
        "against the model on the run's validation split, keep what passes and record the "
        "checks in metrics.json (what `--engine auto` uses; `bloodcell train` and `bloodcell "
        "run` do this by default)",
    )
    add_data_arg(p)
    p.add_argument("--manifest", default=None, help="split manifest (default: the run's)")
    p.set_defaults(func=export_cmd)


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_calibrate(sub)
    _add_predict(sub)
    _add_explain(sub)
    _add_export(sub)
