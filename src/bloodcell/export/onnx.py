"""Export a saved model to ONNX (fp32, optionally int8) that predicts on its own.

The `.onnx` file takes the preprocessed batch `input` (N, 3, S, S, float32; N is dynamic) and
returns `logits` (N, C). A model with an out-of-scope detector also returns `ood_score` (N,):
the graph holds the detector's class means and precision matrices and computes the score
itself (`ScoredGraph`), so the file flags the same images as the torch model with nothing
beside it. Everything else a predictor needs travels in
`metadata_props` (JSON values; keys in `models.backends.META_KEYS`): class names, display names,
preprocessing, calibration temperature, `uncertain` threshold, the detector's threshold, the
conformal calibration scores, architecture and quantisation. `models.engines.open_model` reads
them, so `bloodcell predict model.onnx ...` answers like the model directory.

int8: static QDQ quantisation (per-channel weights, activations calibrated on a few images of the
run's train split) when the run's data can be found, because it keeps accuracy and gives
integer convolutions; otherwise dynamic quantisation, which needs no data. When the test split
is available, the result reports accuracy of fp32 and int8 on it, and their agreement.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bloodcell.data.dataset import ManifestDataset
from bloodcell.data.manifest import ManifestRow
from bloodcell.errors import BloodcellError, DatasetError, ModelError
from bloodcell.evaluation.metrics import accuracy
from bloodcell.evaluation.runs import Split, open_run
from bloodcell.models.backends import (
    ONNX_FORMAT,
    ONNX_INPUT,
    ONNX_OOD_SCORE,
    ONNX_OUTPUT,
    OnnxBackend,
)
from bloodcell.models.saved import LoadedModel, load_model
from bloodcell.models.scope_detector import BLANK_SCORE, BLANK_STD, ScopeDetector, input_spread
from bloodcell.models.torch_backend import dataset_logits
from bloodcell.records import ExportSummary, Int8Accuracy, Quantization
from bloodcell.run_dir import ModelDir

if TYPE_CHECKING:
    from bloodcell.models.registry import Classifier

OPSET = 17
QUANT_METHODS = ("auto", "static", "dynamic")
#: The first convolutions stay in float in int8 files: they see raw pixels, and quantising them
#: moved 2 of 279 test labels of a seed-0 model; in float, none (BENCHMARKS.md).
FLOAT_STEM_CONVS = 3


def onnx_metadata(loaded: LoadedModel, quantization: Quantization | None = None) -> dict[str, str]:
    """The metadata_props written into the file (all values JSON-encoded)."""
    cfg = loaded.config
    meta = {
        "bloodcell.format": ONNX_FORMAT,
        "architecture": loaded.architecture,
        "labels": loaded.labels,
        "display_names": cfg.get("display_names", {}),
        "preprocess": cfg["preprocess"],
        "temperature": loaded.temperature,
        "uncertain_threshold": loaded.uncertain_threshold,
        "quantization": quantization,
        "ood": cfg.get("ood"),
        "conformal": cfg.get("conformal"),
        "cell_gate": cfg.get("cell_gate"),
    }
    return {k: json.dumps(v) for k, v in meta.items()}


class ScoredGraph(torch.nn.Module):
    """The classifier and its out-of-scope score as one graph, for export.

    The same score as `models.scope_detector.ScopeDetector.score`, written with tensor operations:
    for each tapped layer pytorch-ood's Mahalanobis score (half the squared distance to the nearest
    class mean under the shared precision), put on the detector's scale; the largest of them; and
    `BLANK_SCORE` for an image of one flat colour.
    """

    centers: torch.Tensor
    scales: torch.Tensor

    def __init__(self, model: Classifier, detector: ScopeDetector) -> None:
        super().__init__()
        self.model = model
        self.layers = list(detector.layers)
        for i, (mu, precision) in enumerate(zip(detector.means, detector.precisions, strict=True)):
            self.register_buffer(f"mean{i}", mu.float())
            self.register_buffer(f"precision{i}", precision.float())
        self.register_buffer("centers", detector.centers.float())
        self.register_buffer("scales", detector.scales.float())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, taps = self.model.forward_with_taps(x, self.layers)
        scores = []
        for i, z in enumerate(taps):
            centred = z[:, None, :] - getattr(self, f"mean{i}")[None]  # (N, C, D)
            half_d2 = 0.5 * ((centred @ getattr(self, f"precision{i}")) * centred).sum(-1)
            scores.append((half_d2.min(dim=1).values - self.centers[i]) / self.scales[i])
        combined = torch.stack(scores).max(dim=0).values
        blank = input_spread(x) < BLANK_STD
        return logits, torch.where(blank, torch.full_like(combined, BLANK_SCORE), combined)


def update_metadata(path: Path, **values: Any) -> None:
    """Replace some metadata values of a bloodcell ONNX file (JSON-encoded), keep the rest."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    set_metadata(path, {**meta, **{k: json.dumps(v) for k, v in values.items()}})


def set_metadata(path: Path, meta: dict[str, str]) -> None:
    """Replace the file's metadata_props with `meta` (and check the model)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "bloodcell"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_fp32(loaded: LoadedModel, out: Path, opset: int = OPSET) -> Path:
    """Trace the torch model into ONNX with a dynamic batch axis, then attach the metadata."""
    size = loaded.preprocess.image_size
    dummy = torch.zeros(1, 3, size, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    detector = ScopeDetector.load(loaded.path, loaded.config.get("ood"))
    model = (ScoredGraph(loaded.model, detector) if detector else loaded.model).eval()
    outputs = [ONNX_OUTPUT, ONNX_OOD_SCORE] if detector else [ONNX_OUTPUT]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # dynamo=False: the torch.export-based exporter needs onnxscript, which we do not ship.
        torch.onnx.export(
            model,
            (dummy,),
            str(out),
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [ONNX_INPUT, *outputs]},
            opset_version=opset,
            do_constant_folding=True,
        )
    set_metadata(out, onnx_metadata(loaded))
    return out


class _BatchReader:
    """onnxruntime CalibrationDataReader over a list of input batches."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {ONNX_INPUT: batch}


def calibration_batches(
    rows: list[ManifestRow], root: Path, loaded: LoadedModel, n: int = 64, batch_size: int = 16
) -> list[np.ndarray]:
    """A class-balanced handful of preprocessed train images for static quantisation."""
    by_label: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_label.setdefault(r.label, []).append(r)
    per = max(1, n // max(1, len(by_label)))
    picked = [r for lbl in sorted(by_label) for r in by_label[lbl][:per]]
    ds = ManifestDataset(picked, root, loaded.preprocess.transform())
    images = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    return [images[i : i + batch_size] for i in range(0, len(images), batch_size)]


def quantize_int8(
    fp32: Path, out: Path, batches: list[np.ndarray] | None, method: str = "auto"
) -> Quantization:
    """int8 copy of `fp32`: static QDQ if calibration batches are given, else dynamic."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if method == "auto":
        method = "static" if batches else "dynamic"
    if method == "static" and not batches:
        raise DatasetError("static int8 quantisation needs calibration images: pass --data DIR")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        source = _pre_processed(fp32, Path(tmp) / "pre.onnx")
        exclude = scoring_nodes(source) + stem_convs(source)
        if method == "static":
            quantize_static(
                str(source),
                str(out),
                _BatchReader(batches or []),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                nodes_to_exclude=exclude,
            )
        else:
            quantize_dynamic(
                str(source), str(out), weight_type=QuantType.QInt8, nodes_to_exclude=exclude
            )
    info: Quantization = {"dtype": "int8", "method": method}
    if method == "static":
        info["calibration_images"] = int(sum(len(b) for b in batches or []))
    return info


def scoring_nodes(path: Path) -> list[str]:
    """Names of the nodes that compute only the out-of-scope score (none of them leads to the
    logits): they stay in float, so int8 changes the score no more than its inputs."""
    import onnx

    graph = onnx.load(str(path)).graph
    needed, names = {ONNX_OUTPUT}, []
    for node in reversed(graph.node):  # nodes are stored in topological order
        if any(o in needed for o in node.output):
            needed.update(node.input)
        else:
            names.append(node.name)
    return names


def stem_convs(path: Path, n: int = FLOAT_STEM_CONVS) -> list[str]:
    """Names of the graph's first `n` convolutions (graph order is topological)."""
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"][:n]


def _pre_processed(fp32: Path, out: Path) -> Path:
    """ORT's recommended pre-quantisation pass (shape inference + graph optimisation).

    Measured on the 2-core dev CPU with MobileNetV2 at 224 px: static int8 went from about 140
    to 550 images/s with it, because the quantised graph then fuses into integer kernels.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32), str(out))
    except Exception:  # noqa: BLE001 - an optimisation only; quantise the plain graph instead
        return fp32
    return out


def compare_accuracy(
    fp32: Path, int8: Path, rows: list[ManifestRow], root: Path, split: str
) -> Int8Accuracy:
    """Accuracy of both files on one split, and how often their labels agree."""
    results = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        backend = OnnxBackend(path)
        ds = ManifestDataset(rows, root, backend.preprocess.transform())
        logits, targets = dataset_logits(backend, ds, batch_size=32)
        results[name] = logits.argmax(1)
    acc32, acc8 = accuracy(targets, results["fp32"]), accuracy(targets, results["int8"])
    return {
        "split": split,
        "n": int(len(targets)),
        "accuracy_fp32": acc32,
        "accuracy_int8": acc8,
        "accuracy_change": acc8 - acc32,
        "agreement": float((results["fp32"] == results["int8"]).mean()),
    }


def split_or_none(
    model: str | Path, split: str, data_root: str | Path | None, manifest: str | Path | None
) -> Split | None:
    """The split (`runs.open_run`), or None when the run's data cannot be found."""
    try:
        return open_run(model, data_root=data_root, manifest=manifest).split(split)
    except (DatasetError, ModelError):
        return None


def export_onnx(
    model: str | Path,
    out: str | Path | None = None,
    quantize: str | None = None,
    method: str = "auto",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    n_calibration: int = 64,
    opset: int = OPSET,
    compare_on_test: bool = True,
) -> ExportSummary:
    """Write `model.onnx` (and with `quantize="int8"` also `model.int8.onnx`).

    `out` names the final file (default: in the model directory). Returns a summary: paths,
    sizes, quantisation method and, when the test split is available (and `compare_on_test`), the
    int8 accuracy change.
    """
    if Path(model).suffix.lower() == ".onnx":
        raise ModelError(f"{model}: already an ONNX file; export from the run or model directory")
    if quantize not in (None, "int8"):
        raise BloodcellError(f"unknown quantisation {quantize!r}; only int8 is supported")
    if method not in QUANT_METHODS:
        raise BloodcellError(f"unknown quantisation method {method!r}; one of {QUANT_METHODS}")
    loaded = load_model(model)
    files = ModelDir(loaded.path)
    final = Path(out) if out else (files.int8_onnx if quantize else files.onnx)
    fp32 = final if not quantize else final.with_name(final.stem + ".fp32.onnx")
    if quantize and not out:
        fp32 = files.onnx
    export_fp32(loaded, fp32, opset)
    summary: ExportSummary = {
        "fp32": str(fp32),
        "fp32_bytes": fp32.stat().st_size,
        "path": str(fp32),
    }
    if not quantize:
        return summary
    train = split_or_none(model, "train", data_root, manifest) if method != "dynamic" else None
    batches = calibration_batches(train.rows, train.root, loaded, n_calibration) if train else None
    info = quantize_int8(fp32, final, batches, method)
    set_metadata(final, onnx_metadata(loaded, info))
    summary["path"], summary["int8_bytes"] = str(final), final.stat().st_size
    summary["quantization"] = info
    test = split_or_none(model, "test", data_root, manifest) if compare_on_test else None
    if test:
        summary["accuracy"] = compare_accuracy(fp32, final, test.rows, test.root, split="test")
    return summary
