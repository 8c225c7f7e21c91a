"""Training settings (`TrainConfig`) and the named recipes built from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bloodcell.data.dataset import Preprocess
from bloodcell.data.stain import METHODS as STAIN_METHODS
from bloodcell.data.stain import StainNormalizer
from bloodcell.errors import BloodcellError


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. The defaults are the reference's: frozen ImageNet MobileNetV2 + Dense-512
    head, 5 epochs, Adam 1e-3, batch 32, 224 px, no augmentation."""

    model: str = "mobilenet_v2"
    pretrained: bool = True
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 32
    image_size: int = 224
    #: "frozen" (whole backbone), "finetune" (nothing frozen) or N (freeze the first N blocks).
    freeze: str | int = "frozen"
    augment: bool = False
    seed: int = 0
    #: DataLoader worker processes; None = 0 on small machines, else half the cores (max 8).
    workers: int | None = None
    #: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "mps".
    device: str = "auto"
    #: "auto" (bf16-mixed/16-mixed on CUDA, 32-true elsewhere) or any Lightning precision.
    precision: str = "auto"
    #: Keep weights and activations channels-last (NHWC): the same arithmetic, about 1.25x
    #: faster training steps and 1.5x faster frozen-block passes on this project's CPU.
    channels_last: bool = True
    #: Devices per node (GPUs; processes with device="cpu"). 1 = one process, as before.
    devices: int = 1
    #: Machines, each running `devices` processes.
    num_nodes: int = 1
    #: Lightning strategy: "auto" (DDP when devices x num_nodes > 1), "ddp", ...
    strategy: str = "auto"
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "none"
    #: Compute the frozen part's outputs once when they cannot change between epochs.
    feature_cache: bool = True
    #: "imagenet" (fixed statistics) or "per_image" (each image's own: brightness-proof).
    normalize: str = "imagenet"
    #: Stain normalisation before everything else: "none", "macenko" or "reinhard" (torchstain),
    #: fitted once per run on `stain_target` and saved with the model's preprocessing.
    stain_norm: str = "none"
    #: The reference image for it; None = the first train image of the manifest (path order).
    stain_target: str | None = None
    #: With cached block outputs, also flip and turn them by 90 degrees (smears have no
    #: orientation); free augmentation that needs no second pass through the frozen blocks.
    feature_aug: bool = False
    #: With cached outputs, cache this many extra copies of the train split under random
    #: microscope/stain/camera corruptions (`data.corruptions`); each epoch draws every image
    #: from one of the copies at random.
    corrupt_copies: int = 0
    #: The strongest severity (1-3, see `data.corruptions`) those copies are drawn up to.
    corrupt_severity: int = 2
    #: The strongest severity of the random exposure change (darken/brighten) on those copies.
    exposure_severity: int = 2
    #: The strongest random defocus (Gaussian blur, 0 = none) added to every corrupted image
    #: before the other changes; 0 leaves focus to the random corruption alone.
    focus_severity: int = 0
    #: Which epoch becomes the model: "best" (highest val accuracy; lower val loss on ties) or
    #: "last" (the end of the schedule, e.g. one-cycle's annealed weights).
    checkpoint: str = "best"
    #: Share of in-scope (validation) images the out-of-scope detector fitted after training
    #: lets through (`models.ood`); None fits no detector (cross-validation folds).
    ood_acceptance: float | None = 0.99
    recipe: str = "reference"

    def __post_init__(self) -> None:
        if self.checkpoint not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', not {self.checkpoint!r}")
        if self.ood_acceptance is not None and not 0.5 <= self.ood_acceptance < 1.0:
            raise ValueError(
                f"ood_acceptance must be at least 0.5 and below 1, not {self.ood_acceptance!r}"
            )

    def preprocess(self, stain: StainNormalizer | None = None) -> Preprocess:
        """The preprocessing; with `stain_norm` set, `stain` is the run's fitted normaliser
        (`fit_stain`), which is needed: it cannot be derived from the settings alone."""
        if self.stain_norm not in ("none", *STAIN_METHODS):
            raise ValueError(
                f"stain_norm must be one of {('none', *STAIN_METHODS)}, not {self.stain_norm!r}"
            )
        wanted = None if self.stain_norm == "none" else self.stain_norm
        if (stain.method if stain else None) != wanted:
            raise ValueError(
                f"stain_norm={self.stain_norm!r} needs a normaliser fitted with that method "
                f"(fit_stain), got {stain!r}"
            )
        return Preprocess(
            image_size=self.image_size,
            normalize=self.normalize,
            stain=stain.to_dict() if stain else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def frozen_blocks(self, n_blocks: int) -> int:
        """How many backbone blocks are frozen (0 = full fine-tune)."""
        if self.freeze in ("frozen", "all"):
            return n_blocks
        if self.freeze in ("finetune", "none", 0, "0"):
            return 0
        try:
            return min(int(self.freeze), n_blocks)
        except (TypeError, ValueError):
            raise ValueError(
                f"freeze must be 'frozen', 'finetune' or a number of blocks, not {self.freeze!r}"
            ) from None


RECIPES: dict[str, TrainConfig] = {
    "reference": TrainConfig(),
    # The default of `bloodcell run`: ImageNet MobileNetV2 with its first 14
    # blocks frozen and their outputs cached once; the last 5 blocks and the head are fine-tuned
    # with AdamW + one-cycle and label smoothing, on flipped/turned feature maps, each epoch
    # drawing every image from the clean split or one of two cached copies under a random
    # defocus, then random stain, colour, blur, JPEG, scale or noise corruption, then a random
    # exposure change.
    # BENCHMARKS.md has the measurements behind every setting (per-image normalisation and 11
    # frozen blocks were tried and lost).
    "fast": TrainConfig(
        freeze=14,
        epochs=6,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=1e-4,
        schedule="onecycle",
        label_smoothing=0.1,
        feature_aug=True,
        corrupt_copies=2,
        focus_severity=2,
        # Best-on-val picked mid-schedule epochs whose val accuracy was one image higher and
        # which held up worse (brightness x1.4: 94.98% vs 96.4% for the last epoch); 281 val
        # images cannot rank epochs that close, and the annealed last epoch has seen the most
        # corrupted copies.
        checkpoint="last",
        recipe="fast",
    ),
}
DEFAULT_RECIPE = "fast"


def register_recipe(name: str, config: TrainConfig) -> None:
    """Make `config` available as `recipe(name)` (and `--recipe NAME` where the CLI offers it)."""
    RECIPES[name] = replace(config, recipe=name)


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """A named recipe's config with some settings changed."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return replace(RECIPES[name], **overrides)


def config_from_options(recipe_name: str, options: dict[str, Any]) -> TrainConfig:
    """A recipe with command-line options applied (only those given); `freeze` may be "N"."""
    options = dict(options)
    freeze = options.get("freeze")
    if isinstance(freeze, str) and freeze.isdigit():
        options["freeze"] = int(freeze)
    try:
        return recipe(recipe_name, **options)
    except ValueError as exc:  # a bad option: say so before any work starts
        raise BloodcellError(f"bad training option: {exc}") from None
