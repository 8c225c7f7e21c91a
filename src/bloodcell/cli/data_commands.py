"""`bloodcell data download|verify|split|show`: discover -> verify -> split (manifest) -> show."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bloodcell.cli.common import add_data_arg, data_dir

_FMT = argparse.RawDescriptionHelpFormatter


def verified(args: argparse.Namespace) -> Any:
    """The verify report of --data (shared by `verify` and `split`)."""
    from bloodcell.data.discover import discover
    from bloodcell.data.verify import verify

    return verify(
        discover(data_dir(args.data)),
        progress=not args.quiet,
        near_threshold=args.near_threshold,
    )


def download_cmd(args: argparse.Namespace) -> int:
    from bloodcell.data.download import download as fetch

    path = fetch(args.dataset, args.dest)
    print(path)
    print(f"next: bloodcell data verify --data '{path}'", file=sys.stderr)
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    import json

    from bloodcell.data.verify import format_report

    report = verified(args)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.usable else 1


def split_cmd(args: argparse.Namespace) -> int:
    from bloodcell.data.manifest import write_manifest
    from bloodcell.data.split import format_counts, make_groups, make_split

    report = verified(args)
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


def show_cmd(args: argparse.Namespace) -> int:
    from bloodcell.data.manifest import read_manifest
    from bloodcell.data.show import write_figures

    rows = read_manifest(args.manifest)
    for path in write_figures(rows, data_dir(args.data), args.out, args.per_class, args.seed):
        print(path)
    return 0


def cells_cmd(args: argparse.Namespace) -> int:
    from bloodcell.data.show import write_contact_sheets

    for path in write_contact_sheets(data_dir(args.data), args.out, args.per_class, args.seed):
        print(path)
    return 0


def _add_verify_args(p: argparse.ArgumentParser) -> None:
    add_data_arg(p)
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


def _add_download(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "download",
        formatter_class=_FMT,
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
    p.set_defaults(func=download_cmd)


def _add_verify(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "verify",
        formatter_class=_FMT,
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


def _add_split(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "split",
        formatter_class=_FMT,
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


def _add_show(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "show",
        help="write PNGs: sample images per class, class counts per split",
        description="Write samples_train.png and samples_test.png (a grid of random images per "
        "class) and class_counts.png (images per class and split) into --out.",
    )
    p.add_argument(
        "--manifest", metavar="CSV", required=True, help="manifest from `bloodcell data split`"
    )
    add_data_arg(p)
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


def _add_cells(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "cells",
        help="write contact sheets of the white cells the finder marks, per class",
        description="Check the white-cell finder by eye: for a seeded sample of each class, "
        "every image with the outline of the white cells found and their count, one PNG per "
        "class (cells_<label>.png) in --out. The model of the cells recipe sees only these "
        "cells, and an image with none is refused.",
    )
    add_data_arg(p)
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the PNG files")
    p.add_argument(
        "--per-class", type=int, default=12, metavar="K", help="images per class (default: 12)"
    )
    p.add_argument("--seed", type=int, default=0, help="which images are picked (default: 0)")
    p.set_defaults(func=cells_cmd)


def add_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data",
        help="download, verify, split and show the dataset",
        description="Dataset pipeline: download -> verify -> split (manifest.csv) -> show; "
        "cells: contact sheets of the white-cell finder.",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="STEP", required=True)
    _add_download(dsub)
    _add_verify(dsub)
    _add_split(dsub)
    _add_show(dsub)
    _add_cells(dsub)
