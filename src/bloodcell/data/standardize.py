"""Per-image standardisation as a torch module: the last step of the torch transform when a
model normalises each image by its own statistics (`Preprocess.normalizer`, `per_image`).

Apart from `data.preprocess` because it imports torch, which that module does only when a
torch transform is asked for; `eps` is `data.preprocess.PER_IMAGE_EPS`, passed in by it.
"""

from __future__ import annotations

import torch


class PerImageStandardize(torch.nn.Module):
    """Give each colour channel of each image zero mean and unit variance.

    A smear photographed brighter, darker, with more or less contrast or another white balance
    changes each channel by roughly `a * x + b`; standardising per image undoes exactly that, so
    the model never sees the difference (a Reinhard-style colour normalisation in RGB).
    """

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics summed in float64, then rounded: the same float32 mean and std whatever
        # the memory layout (a float32 sum depends on its order), and the same as NumPy's
        # (`Preprocess.pixels`).
        wide = x.double()
        mean = wide.mean(dim=(-2, -1), keepdim=True).to(x.dtype)
        std = wide.std(dim=(-2, -1), keepdim=True).to(x.dtype)
        return (x - mean) / (std + self.eps)
