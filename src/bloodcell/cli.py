"""The `bloodcell` command line: parses arguments and calls the library, nothing more.

Handlers import their modules lazily so that `bloodcell --help` answers at once.
Each command group lives in its own `_add_*` function below, in pipeline order.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bloodcell import __version__
from bloodcell.errors import BloodcellError

UserError = BloodcellError


def _data_dir(value: str | None) -> Path:
    """Resolve --data, falling back to $BLOODCELL_DATA, with an actionable error."""
    value = value or os.environ.get("BLOODCELL_DATA")
    if not value:
        raise UserError(
            "no dataset folder given: pass --data DIR or set BLOODCELL_DATA=DIR "
            "(run `bloodcell data download` to fetch the Kaggle dataset)"
        )
    return Path(value).expanduser()


def _add_data_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="dataset folder (any supported layout); default: $BLOODCELL_DATA",
    )


# --- data: discover -> verify -> split -> show ------------------------------------------------


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """`bloodcell data download|verify|split|show` (handlers nested here, imports lazy)."""
    fmt = argparse.RawDescriptionHelpFormatter
    data = sub.add_parser(
        "data",
        help="download, verify, split and show the dataset",
        description="Dataset pipeline: download -> verify -> split (manifest.csv) -> show.",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="STEP", required=True)

    def _verified(args: argparse.Namespace):
        from bloodcell.data.discover import discover
        from bloodcell.data.verify import verify

        return verify(
            discover(_data_dir(args.data)),
            progress=not args.quiet,
            near_threshold=args.near_threshold,
        )

    def _add_verify_args(p: argparse.ArgumentParser) -> None:
        _add_data_arg(p)
        p.add_argument(
            "--near-threshold",
            type=int,
            default=10,
            metavar="BITS",
            help="max Hamming distance between 64-bit perceptual hashes (phash) "
            "for two images to count as near-duplicates (default: 10; measured on "
            "the Kaggle data: <=10 are re-encoded or shifted copies of one field, "
            "from 12 on unrelated images appear)",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    def download(args: argparse.Namespace) -> int:
        from bloodcell.data.download import download as fetch

        path = fetch(args.dataset, args.dest)
        print(path)
        print(f"next: bloodcell data verify --data '{path}'", file=sys.stderr)
        return 0

    p = dsub.add_parser(
        "download",
        formatter_class=fmt,
        help="download a Kaggle dataset with kagglehub",
        description="Download the B-ALL images from Kaggle with kagglehub (cached in "
        "~/.cache/kagglehub or $KAGGLEHUB_CACHE) and print the folder.\n"
        "  mehradaria: kaggle.com/datasets/mehradaria/leukemia (Original/ + Segmented/)\n"
        "  4class:     kaggle.com/datasets/mohammadamireshraghi/blood-cell-cancer-all-4class\n"
        "Offline? Download by hand, unpack, and use --data DIR or BLOODCELL_DATA=DIR.",
    )
    p.add_argument(
        "--dataset",
        choices=("mehradaria", "4class"),
        default="mehradaria",
        help="which Kaggle dataset (default: mehradaria)",
    )
    p.add_argument(
        "--dest", metavar="DIR", default=None, help="also copy the downloaded files into DIR"
    )
    p.set_defaults(func=download)

    def verify_cmd(args: argparse.Namespace) -> int:
        import json

        from bloodcell.data.verify import format_report

        report = _verified(args)
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            print(format_report(report))
        return 0 if report.usable else 1

    p = dsub.add_parser(
        "verify",
        formatter_class=fmt,
        help="decode every image, count classes, find duplicates",
        description="Decode every file fully (listing each unreadable, truncated or non-image "
        "file with the reason), count images per class, and find exact duplicates (sha256) and "
        "near-duplicates (perceptual hash), within and across classes.\n"
        "Exit status: 0 when usable, 1 when a class has no readable image, 2 on errors.",
    )
    _add_verify_args(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (counts, total, unreadable, "
        "exact_duplicate_groups, near_duplicate_groups, ...) instead of a summary",
    )
    p.set_defaults(func=verify_cmd)

    def split_cmd(args: argparse.Namespace) -> int:
        from bloodcell.data.manifest import write_manifest
        from bloodcell.data.split import format_counts, make_groups, make_split

        report = _verified(args)
        rows = make_split(report, seed=args.seed, ratios=args.ratios, block_size=args.block_size)
        out = write_manifest(rows, args.out)
        n_groups = len(make_groups(report, args.block_size))
        print(
            f"wrote {out}: {len(rows)} images in {n_groups} groups (seed {args.seed}, "
            f"ratios {' '.join(f'{r:g}' for r in args.ratios)}, "
            f"block size {args.block_size or 'off'})"
        )
        print(format_counts(rows))
        print(f"left out: {len(report.unreadable)} unreadable file(s)")
        for u in report.unreadable:
            print(f"  {u['path']}: {u['reason']}")
        return 0

    p = dsub.add_parser(
        "split",
        formatter_class=fmt,
        help="write a leakage-free train/val/test manifest",
        description="Verify the data, then split it stratified by class and grouped: exact "
        "and near-duplicates (and, with --block-size, runs of consecutive file numbers) always "
        "land in the same split. Writes a CSV manifest (path,label,split,sha256,group; paths "
        "relative to --data); the same data and seed give a byte-identical file. Unreadable "
        "files are left out and listed.",
    )
    _add_verify_args(p)
    p.add_argument("--out", metavar="CSV", required=True, help="manifest file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--ratios",
        type=float,
        nargs=3,
        default=[0.8, 0.1, 0.1],
        metavar=("TRAIN", "VAL", "TEST"),
        help="split ratios (default: 0.8 0.1 0.1)",
    )
    p.add_argument(
        "--block-size",
        type=int,
        default=None,
        metavar="N",
        help="also keep file numbers k*N..k*N+N-1 of a class folder together "
        "(file number = trailing digits of the name). Neighbouring numbers were "
        "mostly taken from the same slide, so this approximates a split by slide "
        "and stops unseen near-copies leaking; ratios then hold to about one block. "
        "Default: off",
    )
    p.set_defaults(func=split_cmd)

    def show_cmd(args: argparse.Namespace) -> int:
        from bloodcell.data.manifest import read_manifest
        from bloodcell.data.show import write_figures

        rows = read_manifest(args.manifest)
        for path in write_figures(rows, _data_dir(args.data), args.out, args.per_class, args.seed):
            print(path)
        return 0

    p = dsub.add_parser(
        "show",
        help="write PNGs: sample images per class, class counts per split",
        description="Write samples_train.png and samples_test.png (a grid of random images per "
        "class) and class_counts.png (images per class and split) into --out.",
    )
    p.add_argument(
        "--manifest", metavar="CSV", required=True, help="manifest from `bloodcell data split`"
    )
    _add_data_arg(p)
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the PNG files")
    p.add_argument(
        "--per-class",
        type=int,
        default=8,
        metavar="K",
        help="images per class in each grid (default: 8)",
    )
    p.add_argument("--seed", type=int, default=0, help="which images are picked (default: 0)")
    p.set_defaults(func=show_cmd)


# --- models, training, evaluation -------------------------------------------------------------


def _weights_import(args: argparse.Namespace) -> int:
    from bloodcell.models.registry import known_weights
    from bloodcell.models.weights import import_weights

    for path in args.files:
        target = import_weights(path, known_weights())
        print(f"{path}: hash verified, cached as {target}")
    return 0


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
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
    imp.set_defaults(func=_weights_import)

    def train_cmd(args: argparse.Namespace) -> int:
        from bloodcell.run_dir import RunDir
        from bloodcell.train import config_from_options, is_rank_zero, train

        overrides = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
        if args.no_pretrained:
            overrides["pretrained"] = False
        config = (
            None if args.resume and not overrides else config_from_options(args.recipe, overrides)
        )
        data = _data_dir(args.data) if (args.data or not args.resume) else None
        if not args.resume and not args.manifest:
            raise UserError("--manifest FILE is required (make one with `bloodcell data split`)")
        try:
            run = train(config, data, args.manifest, args.out, resume=args.resume)
        except KeyboardInterrupt:
            print(
                "bloodcell: interrupted; continue with "
                f"`bloodcell train --resume --out {args.out}`",
                file=sys.stderr,
            )
            return 130
        if is_rank_zero():  # under DDP every process gets here; one report is enough
            files = RunDir(run)
            print(f"run: {run}\nmodel: {files.model}\nlog: {files.log}, curves: {files.curves}")
        return 0

    TRAIN_OPTIONS = (
        "model",
        "epochs",
        "lr",
        "batch_size",
        "image_size",
        "freeze",
        "augment",
        "seed",
        "workers",
        "device",
        "precision",
        "devices",
        "num_nodes",
        "strategy",
        "channels_last",
        "label_smoothing",
        "weight_decay",
        "optimizer",
        "schedule",
        "feature_cache",
        "normalize",
        "stain_norm",
        "stain_target",
        "feature_aug",
        "corrupt_copies",
        "corrupt_severity",
        "exposure_severity",
        "focus_severity",
        "checkpoint",
        "ood_acceptance",
    )
    tr = sub.add_parser(
        "train",
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
    _add_data_arg(tr)
    tr.add_argument(
        "--manifest", metavar="FILE", help="split manifest CSV (`bloodcell data split`)"
    )
    tr.add_argument("--out", metavar="RUN", required=True, help="run directory, e.g. runs/NAME")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN from checkpoints/last.ckpt with its saved settings",
    )
    tr.add_argument(
        "--recipe",
        default="reference",
        help="named settings to start from: reference (default) or fast (see BENCHMARKS.md)",
    )
    tr.add_argument("--model", help="registered model: mobilenet_v2 (default), vgg19, ...")
    tr.add_argument(
        "--no-pretrained",
        action="store_true",
        help="random initialisation instead of ImageNet weights",
    )
    tr.add_argument("--epochs", type=int, help="epochs (default 5)")
    tr.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    tr.add_argument("--batch-size", type=int, help="batch size (default 32)")
    tr.add_argument("--image-size", type=int, help="square input size in pixels (default 224)")
    tr.add_argument(
        "--freeze",
        help="'frozen' backbone (default), 'finetune' (train all), or N: freeze the first N blocks",
    )
    tr.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flips, 90-degree turns, mild colour and scale jitter (default off)",
    )
    tr.add_argument("--seed", type=int, help="random seed (default 0)")
    tr.add_argument("--workers", type=int, help="data-loader processes (default: 0 on <=4 cores)")
    tr.add_argument("--device", help="auto (default: CUDA, MPS, else CPU), cpu, cuda, mps")
    tr.add_argument(
        "--precision",
        help="auto (default: bf16/16-mixed on CUDA, else 32-true) or a Lightning precision",
    )
    tr.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="processes per machine, one per GPU (default 1); N > 1 trains with DDP. Under "
        "torchrun or SLURM, give the same N as processes per node (docs/distributed.md)",
    )
    tr.add_argument("--num-nodes", type=int, metavar="N", help="machines (default 1)")
    tr.add_argument(
        "--strategy",
        help="Lightning strategy: auto (default; ddp when devices x nodes > 1), ddp, ...",
    )
    tr.add_argument(
        "--label-smoothing", type=float, help="cross-entropy label smoothing (default 0)"
    )
    tr.add_argument("--weight-decay", type=float, help="weight decay (default 0)")
    tr.add_argument("--optimizer", help="adam (default), adamw, sgd")
    tr.add_argument("--schedule", help="learning-rate schedule: none (default), cosine, onecycle")
    tr.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep weights and activations channels-last (NHWC) while training: the same "
        "arithmetic, faster on CPUs and GPUs (default on)",
    )
    tr.add_argument(
        "--feature-cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compute frozen-backbone outputs once instead of every epoch (default on; "
        "used only when the frozen part's input cannot change)",
    )
    tr.add_argument(
        "--normalize",
        choices=("imagenet", "per_image"),
        help="pixel normalisation: imagenet statistics (reference) or each image's own "
        "(per_image: brightness, contrast and white balance stop mattering)",
    )
    tr.add_argument(
        "--stain-norm",
        choices=("none", "macenko", "reinhard"),
        help="stain normalisation before everything else (torchstain): none (default), "
        "macenko or reinhard; fitted once on --stain-target and saved with the model, so "
        "evaluate, predict, serve and export apply the same",
    )
    tr.add_argument(
        "--stain-target",
        metavar="FILE",
        help="reference image for --stain-norm (default: the first train image of the "
        "manifest, in path order)",
    )
    tr.add_argument(
        "--feature-aug",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with cached block outputs, flip and turn them by 90 degrees each batch",
    )
    tr.add_argument(
        "--corrupt-copies",
        type=int,
        metavar="N",
        help="with cached block outputs, also cache N copies of the train split under random "
        "stain/colour/blur/JPEG/scale/noise corruptions; each epoch draws every image from "
        "one copy at random",
    )
    tr.add_argument(
        "--corrupt-severity",
        type=int,
        choices=(1, 2, 3),
        help="strongest corruption severity in those copies (default 2, the middle one)",
    )
    tr.add_argument(
        "--exposure-severity",
        type=int,
        choices=(1, 2, 3),
        help="strongest random exposure change (darken/brighten) added to every corrupted "
        "image (default 2)",
    )
    tr.add_argument(
        "--focus-severity",
        type=int,
        choices=(0, 1, 2, 3),
        help="strongest random defocus (Gaussian blur) added to every corrupted image "
        "before the other changes (0 = none)",
    )
    tr.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        help="which epoch becomes model/: best on validation accuracy (reference default) or "
        "the last one (the fast recipe's default)",
    )
    tr.add_argument(
        "--ood-acceptance",
        type=float,
        metavar="P",
        help="share of in-scope validation images the out-of-scope detector accepts "
        "(default 0.99); images scoring beyond that threshold get no class",
    )
    tr.set_defaults(func=train_cmd)

    def evaluate_cmd(args: argparse.Namespace) -> int:
        from bloodcell.evaluate import evaluate_run, summary_line
        from bloodcell.run_dir import RunDir

        data = _data_dir(args.data) if args.data else None
        if args.robustness:
            from bloodcell.robustness import check_args, robustness_cli

            check_args(args)  # a typo fails now, not after the plain evaluation
            if Path(args.run).suffix.lower() == ".onnx":
                return robustness_cli(args, data)  # evaluate_run needs the torch model
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
            from bloodcell.ood_eval import evaluate_ood, summary_lines

            r = evaluate_ood(args.run, args.ood, args.split, data, args.manifest)
            for line in summary_lines(r):
                print(line)
            print(f"out-of-scope figures: {r['out_dir']}")
        rc = 0
        if args.robustness:
            from bloodcell.robustness import robustness_cli

            rc = robustness_cli(args, data)
        from bloodcell.model_card import write_model_card

        print(f"model card: {write_model_card(m['model_dir'])}")
        return rc

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
        "--severities", metavar="1,2,3", help="with --robustness: only these (default 1,2,3)"
    )
    ev.set_defaults(func=evaluate_cmd)


# --- use the model: calibrate, predict, explain, export ---------------------------------------


def _add_use_commands(sub: argparse._SubParsersAction) -> None:
    def calibrate(args: argparse.Namespace) -> int:
        from bloodcell.calibrate import calibrate_run, set_ood_acceptance
        from bloodcell.models.conformal import check_coverage
        from bloodcell.models.ood import check_acceptance
        from bloodcell.models.saved import update_config

        check_coverage(args.coverage)  # a typo fails before the model runs
        if args.ood_acceptance is not None:
            check_acceptance(args.ood_acceptance)
        s = calibrate_run(
            args.run, data_root=args.data, manifest=args.manifest, coverage=args.coverage
        )
        print(
            f"temperature {s['temperature']:.3f} fitted on {s['n']} validation images: "
            f"ECE {s['ece_before']:.4f} -> {s['ece_after']:.4f}, "
            f"NLL {s['nll_before']:.4f} -> {s['nll_after']:.4f}; "
            f"prediction sets at {s['coverage']:.0%} coverage"
        )
        if args.ood_acceptance is not None:
            ood = set_ood_acceptance(args.run, args.ood_acceptance)
            print(
                f"out-of-scope threshold {ood['threshold']:.4f} "
                f"({ood['acceptance']:.1%} of validation images in scope)"
            )
        if args.uncertain_threshold is not None:
            update_config(args.run, uncertain_threshold=args.uncertain_threshold)
            print(f"uncertain threshold set to {args.uncertain_threshold}")
        return 0

    def predict(args: argparse.Namespace) -> int:
        from bloodcell.predict import format_totals, run_predict

        totals = run_predict(
            args.model,
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
        )
        print(format_totals(totals), file=sys.stderr)
        return 0 if totals.n_files > totals.n_errors or totals.n_skipped else 1

    def explain(args: argparse.Namespace) -> int:
        from bloodcell.explain import run_explain

        results = run_explain(args.model, args.images, args.out)
        for image, png, error in results:
            print(f"{image}: {'error: ' + error if error else png}")
        return 0 if results and all(e is None for _, _, e in results) else 1

    def export(args: argparse.Namespace) -> int:
        from bloodcell.export import export_onnx

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

    def threshold_arg(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--uncertain-threshold",
            type=float,
            default=None,
            metavar="P",
            help=f"{what} flag predictions whose calibrated top probability is below P as "
            "uncertain (model default 0.8: below it, more than one answer in five is "
            "expected to be wrong)",
        )

    p = sub.add_parser(
        "calibrate",
        help="fit temperature scaling and prediction sets on the validation split",
        description="Fit the temperature T that makes confidence honest (minimum NLL on the "
        "validation split), store it with the model, and print ECE before and after. Also fits "
        "the conformal prediction sets (the classes that remain possible, at --coverage) and "
        "can move the out-of-scope threshold (--ood-acceptance).",
    )
    p.add_argument("run", metavar="RUN", help="run or model directory")
    _add_data_arg(p)
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
    threshold_arg(p, "also store a new default threshold:")
    p.set_defaults(func=calibrate)

    p = sub.add_parser(
        "predict",
        help="classify images and folders (streams, with a progress bar)",
        description="Predict the class of each image (folders are searched recursively). "
        "Unreadable files become error rows; the rest goes on. Streams: folders of any size "
        "are walked lazily, decoded by --workers threads and written batch by batch, so memory "
        "does not grow with the number of files. For large archives write CSV or Parquet "
        "(--out results.csv or --out results.parquet, a folder of part files) and, after an "
        "interruption, rerun the same command with --resume. Schemas: see "
        "`python -m pydoc bloodcell.predict`.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory, model directory or .onnx file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json", "parquet"),
        default=None,
        help="output format (default: from --out's suffix, else table)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write here instead of stdout (.csv, .json, or .parquet: a folder of "
        "part-NNNNN.parquet files)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip images already in --out (CSV or Parquet only; not with JSON or "
        "--group-by-folder) and append the rest: continues a killed run with "
        "nothing lost and nothing done twice",
    )
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
    threshold_arg(p, "")
    p.set_defaults(func=predict)

    p = sub.add_parser(
        "explain",
        help="write Grad-CAM heatmap overlays (PNG) for images",
        description="Grad-CAM on the torch model (not .onnx): one PNG per image, titled with "
        "the prediction and its calibrated confidence.",
    )
    p.add_argument("model", metavar="MODEL", help="run or model directory (not .onnx)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    p.set_defaults(func=explain)

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
    _add_data_arg(p)
    p.add_argument("--manifest", default=None, help="split manifest (default: the run's)")
    p.set_defaults(func=export)


# --- serve ------------------------------------------------------------------------------------


def _add_serve_commands(sub: argparse._SubParsersAction) -> None:
    def serve(args: argparse.Namespace) -> int:
        import uvicorn

        from bloodcell.serve.app import create_app
        from bloodcell.serve.auth import api_key_from_env

        if args.batch_size < 1:
            p.error(f"--batch-size must be at least 1, got {args.batch_size}")
        if not 0 <= args.batch_wait_ms <= 10_000:
            p.error(f"--batch-wait-ms must be 0 to 10000, got {args.batch_wait_ms:g}")
        api_key = args.api_key or api_key_from_env()
        app = create_app(
            args.model,
            max_upload_bytes=int(args.max_upload_mb * 1_000_000),
            max_pixels=int(args.max_megapixels * 1_000_000),
            max_files=args.max_files,
            batch_size=args.batch_size,
            batch_wait_ms=args.batch_wait_ms,
            api_key=api_key,
            cors_origins=args.cors_origin,
        )
        if not api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"bloodcell: warning: listening on {args.host} without authentication; "
                "anyone who can reach this port can use the model (set BLOODCELL_API_KEY)",
                file=sys.stderr,
            )
        host = f"[{args.host}]" if ":" in args.host else args.host
        guard = "; /v1/* needs the API key" if api_key else ""
        print(
            f"bloodcell: serving {args.model} at http://{host}:{args.port}/{guard} (Ctrl+C stops)"
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
        return 0

    p = sub.add_parser(
        "serve",
        help="web page and REST API for a model (research use only)",
        description="Serve MODEL (a run or model directory, or an exported .onnx file) over HTTP: "
        "a page at / to drop in smear images, and GET /health, GET /v1/model, "
        "POST /v1/predict (multipart field 'files', ?explain=true for Grad-CAM), "
        "/openapi.json. ONNX Runtime is used when MODEL is an .onnx file or a current "
        "model.onnx sits beside the saved model; Grad-CAM needs the model directory. "
        "Images from requests that arrive together are classified in one batch by a "
        "worker thread (/health shows the queue). With an API key (--api-key or "
        "BLOODCELL_API_KEY), /v1/* answers 401 without 'Authorization: Bearer KEY'; /health "
        "and the page stay open, and the page asks for the key. CORS is off unless "
        "--cors-origin names origins.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory, model directory or .onnx file")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=10.0,
        metavar="MB",
        help="largest request body, all images together (default: %(default)s)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=40.0,
        metavar="MP",
        help="largest image, width x height, refused before decoding (default: %(default)s)",
    )
    p.add_argument(
        "--max-files",
        type=int,
        default=16,
        metavar="N",
        help="most images in one request (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="most images in one model call, gathered from concurrent requests "
        "(default: %(default)s; 1 turns batching off)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="longest the first image of a batch waits for images of other requests that "
        "are already being decoded; a lone request never waits "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1/* (default: $BLOODCELL_API_KEY, "
        "else none); prefer the variable, since a command line is visible to other users",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN (e.g. https://lab.example.org) call the API from a browser; "
        "repeat for more origins (default: none, CORS off)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default: %(default)s)",
    )
    p.set_defaults(func=serve)


# --- the main job and benchmarks --------------------------------------------------------------


def _shortening(args: argparse.Namespace) -> dict[str, object]:
    """The training overrides of the 'shortening' options `run` and `cv` share (given ones only)."""
    overrides: dict[str, object] = {
        k: getattr(args, k)
        for k in ("epochs", "image_size", "batch_size", "workers", "device")
        if getattr(args, k) is not None
    }
    if args.no_pretrained:
        overrides["pretrained"] = False
    return overrides


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    def run_cmd(args: argparse.Namespace) -> int:
        from bloodcell.pipeline import run
        from bloodcell.train import config_from_options

        overrides = _shortening(args)
        run(
            _data_dir(args.data),
            args.out,
            seed=args.seed,
            config=config_from_options(args.recipe, overrides),
            ood_dirs=args.ood,
        )
        return 0

    p = sub.add_parser(
        "run",
        help="the main job: verify, split, train mobilenet_v2, calibrate, evaluate val and test, "
        "report",
        description="Run everything with the default settings and print where it all went: "
        "OUT/data/verify.json and figures, OUT/manifest.csv (grouped split; unreadable files "
        "are reported and left out), the training run in OUT (model/, log.csv, curves.png; the "
        "model carries its out-of-scope detector and conformal prediction sets), "
        "OUT/eval/{val,test}/report.md, a summary OUT/report.md and the model card "
        "OUT/model/README.md. Re-running into the same "
        "OUT resumes an interrupted training.",
    )
    _add_data_arg(p)
    p.add_argument(
        "--out", metavar="DIR", default="runs/latest", help="output folder (default runs/latest)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for the split and training (default 0)"
    )
    p.add_argument(
        "--recipe",
        default="fast",
        help="training settings: fast (default; the measured best, see BENCHMARKS.md) or "
        "reference (the Keras notebook: frozen backbone, Adam 1e-3, 5 epochs)",
    )
    p.add_argument(
        "--ood",
        nargs="+",
        metavar="DIR",
        default=None,
        help="folders of images unlike the training data (other labs, other cells, photos): "
        "how many the out-of-scope detector refuses goes into the report",
    )
    quick = p.add_argument_group("shortening (quick looks and tests; defaults are the recipe's)")
    quick.add_argument("--epochs", type=int, help="training epochs")
    quick.add_argument("--image-size", type=int, help="input size in pixels (default 224)")
    quick.add_argument("--batch-size", type=int, help="batch size (default 32)")
    quick.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    quick.add_argument("--workers", type=int, help="data-loader processes")
    quick.add_argument("--device", help="auto (default), cpu, cuda, mps")
    p.set_defaults(func=run_cmd)


def _add_cv_command(sub: argparse._SubParsersAction) -> None:
    def cv_cmd(args: argparse.Namespace) -> int:
        from bloodcell.cv import CVSettings, compare_protocols, run_cv
        from bloodcell.train import config_from_options

        overrides = _shortening(args)
        config = config_from_options(args.recipe, overrides)
        settings = CVSettings(
            folds=args.folds,
            grouping=args.group or "near",
            block_size=args.block_size,
            val_fraction=args.val_fraction,
            seeds=tuple(args.seeds),
            calibrate=not args.no_calibrate,
        )
        data, progress = _data_dir(args.data), not args.quiet
        if args.compare_protocols:
            if args.group is not None:
                raise UserError("--compare-protocols runs every grouping itself; leave --group out")
            result = compare_protocols(data, args.out, config, settings, progress)
            for r in result["protocols"]:
                lo, hi = r["accuracy_ci95"]
                print(f"{r['protocol']}: pooled accuracy {r['accuracy']:.2%} "
                      f"(95% CI {lo:.2%}-{hi:.2%}), vs image-level "
                      f"{100 * r['difference_vs_image']:+.2f} points")  # fmt: skip
        else:
            result = run_cv(data, args.out, config, settings, progress)
            for seed in result["seeds"]:
                p = seed["pooled"]
                lo, hi = p["ci95"]["accuracy"]
                print(f"seed {seed['seed']}: pooled accuracy {p['accuracy']:.2%} "
                      f"(95% CI {lo:.2%}-{hi:.2%}), macro-F1 {p['macro_f1']:.3f}, "
                      f"n={p['n']}")  # fmt: skip
        print(f"report: {Path(args.out) / 'report.md'}")
        return 0

    p = sub.add_parser(
        "cv",
        help="grouped, stratified K-fold cross-validation of a recipe (and the leakage study)",
        description="Cross-validate a training recipe: K folds stratified by class, every "
        "duplicate group (with --group block, every block of neighbouring file numbers) inside "
        "one fold, each fold's validation part taken from its training folds the same way; "
        "every image is tested once per seed. Writes OUT/seed-S/fold-F/manifest.csv (one "
        "manifest per fold, byte-identical for the same data and seed; `bloodcell train "
        "--manifest` reads it), run/ and predictions.csv per fold, OUT/cv.json and "
        "OUT/report.md (per-fold table, pooled metrics with 95% intervals from a bootstrap "
        "over groups, pooled confusion matrix, a plot of the folds' spread). Rerun the same "
        "command to continue a killed run: finished folds are skipped. With "
        "--compare-protocols: the same under a random image-level split, grouped by "
        "duplicates and grouped by blocks, side by side (OUT/report.md, OUT/protocols.json).",
    )
    _add_data_arg(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder, e.g. runs/cv")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default 5)")
    p.add_argument(
        "--group",
        choices=("image", "exact", "near", "block"),
        help="what stays inside one fold: near (default: exact and near-duplicates), exact "
        "(byte-identical copies only), block (also runs of --block-size file numbers, an "
        "approximation of a split by slide), image (nothing: the usual random split, leaky)",
    )
    p.add_argument(
        "--block-size", type=int, metavar="N",
        help="with --group block or --compare-protocols: file numbers k*N..k*N+N-1 of a class "
        "folder form one block (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--val-fraction", type=float, default=0.1, metavar="F",
        help="share of each fold's training images (per class) kept back for validation "
        "(default 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--recipe", default="fast",
        help="training settings: fast (default, as `bloodcell run`) or reference",
    )  # fmt: skip
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0], metavar="N",
        help="seeds; each makes its own folds and trains with that seed (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--compare-protocols", action="store_true",
        help="run the recipe under (a) a random image-level split, (b) grouped by duplicates "
        "and (c) grouped by blocks, and report pooled accuracy side by side with the "
        "difference from (a) and its paired bootstrap interval",
    )  # fmt: skip
    p.add_argument(
        "--no-calibrate", action="store_true",
        help="skip temperature scaling on each fold's validation part",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    quick = p.add_argument_group("shortening (quick looks and tests; defaults are the recipe's)")
    quick.add_argument("--epochs", type=int, help="training epochs")
    quick.add_argument("--image-size", type=int, help="input size in pixels (default 224)")
    quick.add_argument("--batch-size", type=int, help="batch size (default 32)")
    quick.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    quick.add_argument("--workers", type=int, help="data-loader processes")
    quick.add_argument("--device", help="auto (default), cpu, cuda, mps")
    p.set_defaults(func=cv_cmd)


def _add_benchmark_command(sub: argparse._SubParsersAction) -> None:
    def benchmark_cmd(args: argparse.Namespace) -> int:
        from bloodcell.benchmark import benchmark

        extra = ["--no-pretrained"] if args.no_pretrained else []
        if args.epochs is not None:
            extra += ["--epochs", str(args.epochs)]
        if args.image_size is not None:
            extra += ["--image-size", str(args.image_size)]
        benchmark(
            _data_dir(args.data),
            args.out,
            recipes=args.recipes,
            seeds=args.seeds,
            seconds=args.seconds,
            runs=args.runs,
            train_args=extra,
            ood_dirs=args.ood or (),
        )
        return 0

    p = sub.add_parser(
        "benchmark",
        help="train and time each recipe beside the reference; print one table",
        description="On one machine, in one run: split the data, train the reference recipe and "
        "each given recipe (each in its own process, to measure its wall time and peak memory), "
        "calibrate and evaluate them on the test split, export ONNX fp32 and int8, and time "
        "torch eager and ONNX Runtime at batch 32 and batch 1. Prints a table and writes "
        "OUT/benchmark.md and OUT/benchmark.json. Finished trainings in OUT are reused.",
    )
    _add_data_arg(p)
    p.add_argument("--out", metavar="DIR", default="runs/benchmark", help="default runs/benchmark")
    p.add_argument(
        "--recipes", nargs="+", default=["fast"], metavar="NAME",
        help="recipes to compare with the reference (default: fast)",
    )  # fmt: skip
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0], metavar="N",
        help="training seeds per recipe (default 0; use 0 1 2 for mean ± spread)",
    )  # fmt: skip
    p.add_argument("--seconds", type=float, default=3.0, help="time per throughput figure")
    p.add_argument("--runs", type=int, default=100, help="batch-1 calls per latency figure")
    p.add_argument(
        "--ood", nargs="+", metavar="DIR",
        help="folders of images unlike the training data: the share each model refuses",
    )  # fmt: skip
    quick = p.add_argument_group("shortening (tests and quick looks)")
    quick.add_argument("--epochs", type=int, help="override every recipe's epochs")
    quick.add_argument("--image-size", type=int, help="override the input size")
    quick.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    p.set_defaults(func=benchmark_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bloodcell",
        description="Classify B-ALL peripheral blood smear images: verify and split the data "
        "without leakage, train, evaluate, explain, export and serve.",
    )
    parser.add_argument("--version", action="version", version=f"bloodcell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_use_commands(sub)
    _add_serve_commands(sub)
    _add_run_commands(sub)
    _add_cv_command(sub)
    _add_benchmark_command(sub)
    return parser


#: Commands that do heavy tensor work and so re-execute under the fast allocator.
HEAVY_COMMANDS = frozenset(
    {"train", "evaluate", "calibrate", "predict", "explain", "export", "serve", "run", "cv"}
    | {"benchmark"}
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Run as a program (argv None), heavy commands re-execute once under a fast
    memory allocator (see `bloodcell.allocator`); called in-process with argv, they never do."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and args.command in HEAVY_COMMANDS:
        from bloodcell.allocator import reexec_with_fast_allocator

        reexec_with_fast_allocator(sys.argv[1:])
    try:
        return int(args.func(args) or 0)
    except BloodcellError as exc:
        print(f"bloodcell: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bloodcell: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
