"""The frozen stem on ONNX Runtime, for the caching pass on a CPU.

Why: caching runs the frozen blocks once over every training image and each corrupted copy
(about 8,000 images for the default model). On two CPU cores ONNX Runtime runs MobileNetV2's
first 14 blocks about 2.5 times as fast as torch (3.7 against 9.2 ms an image, BENCHMARKS.md
"Fast again"), with the same outputs to about 1e-5. The stem is frozen, so nothing is lost:
the graph is traced once per training, kept in memory, and its outputs become the cached
tensors that torch trains on.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bloodcell.models.backends import onnx_session_options

#: The stem's input in the traced graph.
INPUT = "images"
#: The ONNX operator set the graph is traced at (the one `bloodcell export` uses).
OPSET = 17


def onnx_stem(
    stem: nn.Module, image_size: int
) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """`stem` (images -> one or more tensors) traced into ONNX with a dynamic batch axis and
    opened on ONNX Runtime's CPU engine; returns a function of a CPU batch with the stem's
    outputs as CPU tensors."""
    import onnxruntime as ort

    stem = stem.eval()
    dummy = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        n_out = len(_as_tuple(stem(dummy)))
    outputs = [f"out{i}" for i in range(n_out)]
    with tempfile.TemporaryDirectory(prefix="bloodcell-stem-") as tmp:
        graph = Path(tmp) / "stem.onnx"
        _trace(stem, dummy, graph, outputs)
        session = ort.InferenceSession(
            str(graph), onnx_session_options(), providers=["CPUExecutionProvider"]
        )

    def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {INPUT: x.detach().cpu().float().contiguous().numpy()}
        return tuple(torch.from_numpy(out) for out in session.run(None, feed))

    return run


def _trace(stem: nn.Module, dummy: torch.Tensor, graph: Path, outputs: list[str]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            stem,
            (dummy,),
            str(graph),
            dynamo=False,
            input_names=[INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]},
            opset_version=OPSET,
            do_constant_folding=True,
        )


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)
