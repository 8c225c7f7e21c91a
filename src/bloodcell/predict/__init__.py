"""Predict the class of new smear images, streaming over batches, with honest confidence.

Library use (a server, a large-archive job)::

    backend = open_model("runs/x")                    # run/model dir or .onnx
    for batch in predict_paths(backend, ["slides/"]):  # lazily walks, yields per batch
        for p in batch: print(p.to_dict())
    predict_images(backend, [pil_image])               # already-decoded images

Files: every PATH that is a file is tried; folders are searched recursively (sorted, hidden
files and folders skipped) and every file in them is tried. Files are decoded by the shared
decoder (`bloodcell.data.decode`: JPEG, PNG, BMP, TIFF or WebP, at most 40 megapixels); a file
that cannot be decoded becomes an *error row* (path + reason) and the rest goes on.

`confidence` is the calibrated (temperature-scaled) top-class probability; `uncertain` is true
when it is below the threshold (model config `uncertain_threshold`, default 0.8, see
`bloodcell.evaluation.calibrate`). With TTA the probabilities are the mean over the 8 dihedral views
(4 rotations x optional flip): smears have no orientation.

`out_of_scope` is true when the image is unlike the training smears (`models.scope_detector`: its
`ood_score` is over the model's threshold); such a row has no class (label, display name,
confidence, uncertain and set are empty; the probabilities are listed for the record).
`prediction_set` is the conformal set of the classes the image still fits (`models.conformal`,
at the model's coverage, 95% by default); `note` says it in plain words when it holds more than
one class ("Benign or Malignant Early Pre-B: ... confirm by flow cytometry"). A model saved
without a detector or sets leaves these fields empty (null).

JSON schema (`--format json`), one document, written as it goes::

    {"model": {"path", "engine", "backend" (deprecated: the same as "engine"), "architecture",
               "labels", "temperature", "uncertain_threshold", "image_size", ...},
     "tta": bool, "uncertain_threshold": float,
     "predictions": [
        {"path": str, "label": str|null, "display_name": str|null,
         "confidence": float|null, "uncertain": bool|null, "out_of_scope": bool|null,
         "ood_score": float|null, "prediction_set": [label, ...]|null,
         "probabilities": {label: float, ...}|null, "note": str|null,
         "engine": "onnx-int8"|"onnx"|"torch"|null, "error": str|null}, ...],
     "groups": [GROUP, ...],          # only with --group-by-folder
     "summary": {"n_files", "n_predicted", "n_errors", "n_uncertain", "n_out_of_scope",
                 "counts": {label: int}}}

    GROUP = {"folder": str, "n_images": int, "n_errors": int, "n_uncertain": int,
             "n_out_of_scope": int, "counts": {label: int},
             "mean_probabilities": {label: float}|null}

JSON Lines (`--format jsonl`, or `--out results.jsonl`): one prediction object per line (the
object in `predictions` above), flushed after every batch; no model metadata or summary. With
`--group-by-folder` the GROUP objects, one per line, go to `<out stem>.groups.jsonl` (or, on
stdout, after one blank line). Read it with `pandas.read_json(path, lines=True)` or line by line.

CSV schema (`--format csv`), one row per file, header first::

    path,label,display_name,confidence,uncertain,out_of_scope,ood_score,prediction_set,
    prob_benign,prob_early_pre_b,prob_pre_b,prob_pro_b,engine,error

`uncertain` and `out_of_scope` are `true`/`false`; `prediction_set` is labels joined by `|`;
`engine` is the engine that answered (`models.engines`); on error rows every column but `path`
and `error` is empty. The columns, the JSON keys and the API's result fields all come from the
fields of `records.Prediction`: a new field is added there once. With `--group-by-folder`, the
groups go to `<out stem>.groups.csv` (or, on stdout, after one blank line) with columns
`folder,n_images,n_errors,n_uncertain,n_out_of_scope,count_<label>...,mean_prob_<label>...`.

Parquet (`--out results.parquet`, or `--format parquet`): a Parquet *dataset*, i.e. a folder
`results.parquet/` of `part-00000.parquet`, `part-00001.parquet`, ... with the CSV's columns
(`confidence`, `ood_score` and `prob_*` float64, `uncertain` and `out_of_scope` bool, nulls
where CSV has empty cells) and the
JSON `model` metadata under the schema metadata key `bloodcell`. Each part (default 4096 rows,
in row groups of 256) is written under a `.tmp` name and renamed when complete, so a killed run
leaves only complete parts plus one `.tmp` file; read the folder with
`pyarrow.parquet.read_table("results.parquet")` or `pandas.read_parquet(...)`.

Large archives and `--resume`: folders are walked lazily, images are decoded by `--workers`
threads a few batches ahead of the model, and rows are flushed after every batch, so memory
does not grow with the number of files. After an interruption, the same command with `--resume`
reads the paths already in the output (CSV and JSON Lines: the partial last line a kill may
leave is cut off; Parquet: the unfinished `.tmp` part is deleted) and predicts only the rest,
appending to the output; every file then appears exactly once. Only CSV, JSON Lines and Parquet
outputs resume; a JSON document and `--group-by-folder` summaries end with totals of the whole
run and do not.

Shards (`--shard I/N`, `data.files.Shard`): shard I of N predicts only the I-th of N contiguous,
near-equal parts of the files the walk above finds (files floor((I-1)*n/N) to floor(I*n/N)-1
of n), so a scheduler's array of N jobs, each with its own `--out`, splits an archive between
them, each resumable on its own. Put one after the other in shard order, the shards' outputs
hold the rows of one run over everything, in its order (scores within float noise of it: the
batches differ). The files must not change while the shards run. Merging, for N=4:

    CSV:        awk 'FNR > 1 || NR == 1' out-{1..4}.csv > out.csv    (every shard has a header)
    JSON Lines: cat out-{1..4}.jsonl > out.jsonl
    Parquet:    pyarrow.concat_tables([pyarrow.parquet.read_table(f"out-{i}.parquet")
                                       for i in range(1, 5)])
    JSON:       each shard is a whole document whose `summary` counts that shard only; join
                the `predictions` lists (or prefer JSON Lines for archives)

`--group-by-folder` sums whole folders, which can span two shards, and is refused with a shard.
An empty shard (more shards than files) writes an output with no rows (Parquet: an empty
folder, to leave out of the merge) and exits 0.

Exit status of `bloodcell predict`: 0 when at least one image was predicted (error rows do not
fail the run; they are in the output) or, with `--resume`, all were already in the output; 1 when
none could be (a shard: 0 also when it holds no file).
"""

from bloodcell.data.files import iter_image_paths, read_image
from bloodcell.predict.columns import csv_header, csv_row, group_csv_header, group_csv_row
from bloodcell.predict.grouping import (
    FolderGrouper,
    FolderSummary,
    Totals,
    format_totals,
    group_by_folder,
)
from bloodcell.predict.predict_job import run_predict
from bloodcell.predict.records import OUT_OF_SCOPE_NOTE, Prediction, to_predictions
from bloodcell.predict.resume import (
    RESUMABLE,
    _cut_partial_line,
    csv_done_paths,
    jsonl_done_paths,
    parquet_done_paths,
)
from bloodcell.predict.stream import PREFETCH, predict_images, predict_paths
from bloodcell.predict.writers import (
    FORMATS,
    CsvWriter,
    JsonlWriter,
    JsonWriter,
    TableWriter,
    Writer,
    infer_format,
    make_writer,
)
from bloodcell.predict.writers_parquet import ParquetDatasetWriter

__all__ = [
    "FORMATS",
    "OUT_OF_SCOPE_NOTE",
    "PREFETCH",
    "RESUMABLE",
    "CsvWriter",
    "FolderGrouper",
    "FolderSummary",
    "JsonWriter",
    "JsonlWriter",
    "ParquetDatasetWriter",
    "Prediction",
    "TableWriter",
    "Totals",
    "Writer",
    "_cut_partial_line",
    "csv_done_paths",
    "csv_header",
    "csv_row",
    "format_totals",
    "group_by_folder",
    "group_csv_header",
    "group_csv_row",
    "infer_format",
    "iter_image_paths",
    "jsonl_done_paths",
    "make_writer",
    "parquet_done_paths",
    "predict_images",
    "predict_paths",
    "read_image",
    "run_predict",
    "to_predictions",
]
