"""Training settings (`TrainConfig`) and the named recipes built from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from bloodcell.data.cells import CellFinder
from bloodcell.data.preprocess import NORMALIZATIONS, Preprocess
from bloodcell.data.scale import TRAINING_RED_CELL_PX
from bloodcell.data.stain import METHODS as STAIN_METHODS
from bloodcell.data.stain import StainNormalizer
from bloodcell.errors import BloodcellError

#: The names `freeze` takes besides a number of blocks (the last two are aliases).
FREEZE_NAMES = ("frozen", "finetune", "all", "none")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. The defaults are the reference's: frozen ImageNet MobileNetV2 + Dense-512
    head, 5 epochs, Adam 1e-3, batch 32, 224 px, no augmentation."""

    model: str = field(default="mobilenet_v2", metadata={"help": "registered model architecture"})
    pretrained: bool = field(
        default=True,
        metadata={"help": "start from ImageNet weights (--no-pretrained: random initialisation)"},
    )
    epochs: int = field(default=5, metadata={"help": "training epochs", "min": 1})
    lr: float = field(default=1e-3, metadata={"help": "learning rate", "min": 0})
    batch_size: int = field(default=32, metadata={"help": "batch size", "min": 1})
    image_size: int = field(default=224, metadata={"help": "square input size in pixels", "min": 1})
    #: "frozen" (whole backbone), "finetune" (nothing frozen) or N (freeze the first N blocks).
    freeze: str | int = field(
        default="frozen",
        metadata={
            "help": "'frozen' (the whole backbone), 'finetune' (train all), or N: freeze the "
            "first N blocks",
            "metavar": "N|frozen|finetune",
        },
    )
    augment: bool = field(
        default=False,
        metadata={"help": "flips, 90-degree turns, mild colour and scale jitter"},
    )
    seed: int = field(default=0, metadata={"help": "random seed", "min": 0, "max": 2**32 - 1})
    #: DataLoader worker processes; None = 0 on small machines, else half the cores (max 8).
    workers: int | None = field(
        default=None,
        metadata={
            "help": "data-loader processes (not given: 0 on up to 4 cores, else half the "
            "cores, at most 8)",
            "min": 0,
        },
    )
    #: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "mps".
    device: str = field(
        default="auto",
        metadata={
            "help": "where to train: auto (CUDA, then MPS, then CPU), cpu, cuda or mps",
            "choices": ("auto", "cpu", "cuda", "mps"),
        },
    )
    #: "auto" (bf16-mixed/16-mixed on CUDA, 32-true elsewhere) or any Lightning precision.
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16-mixed or 16-mixed on CUDA, 32-true elsewhere) or a Lightning "
            "precision"
        },
    )
    #: Keep weights and activations channels-last (NHWC): the same arithmetic, about 1.25x
    #: faster training steps and 1.5x faster frozen-block passes on this project's CPU.
    channels_last: bool = field(
        default=True,
        metadata={
            "help": "keep weights and activations channels-last (NHWC) while training: the "
            "same arithmetic, faster on CPUs and GPUs"
        },
    )
    #: Devices per node (GPUs; processes with device="cpu"). 1 = one process, as before.
    devices: int = field(
        default=1,
        metadata={
            "help": "processes per machine, one per GPU; N > 1 trains with DDP. Under torchrun "
            "or SLURM, give the same N as processes per node (docs/distributed.md)",
            "metavar": "N",
            "min": 1,
        },
    )
    #: Machines, each running `devices` processes.
    num_nodes: int = field(default=1, metadata={"help": "machines", "metavar": "N", "min": 1})
    #: Lightning strategy: "auto" (DDP when devices x num_nodes > 1), "ddp", ...
    strategy: str = field(
        default="auto",
        metadata={"help": "Lightning strategy: auto (ddp when devices x nodes > 1), ddp, ..."},
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "cross-entropy label smoothing", "min": 0, "max": 1},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay", "min": 0})
    optimizer: str = field(default="adam", metadata={"help": "optimizer"})
    schedule: str = field(default="none", metadata={"help": "learning-rate schedule"})
    #: Compute the frozen part's outputs once when they cannot change between epochs.
    feature_cache: bool = field(
        default=True,
        metadata={
            "help": "compute frozen-backbone outputs once instead of every epoch (used only "
            "when the frozen part's input cannot change)"
        },
    )
    #: "imagenet" (fixed statistics) or "per_image" (each image's own: brightness-proof).
    normalize: str = field(
        default="imagenet",
        metadata={
            "help": "pixel normalisation: imagenet statistics or each image's own (per_image: "
            "brightness, contrast and white balance stop mattering)",
            "choices": NORMALIZATIONS,
        },
    )
    #: Stain normalisation before everything else: "none", "macenko" or "reinhard" (torchstain),
    #: fitted once per run on `stain_target` and saved with the model's preprocessing.
    stain_norm: str = field(
        default="none",
        metadata={
            "help": "stain normalisation before everything else (torchstain); fitted once on "
            "--stain-target and saved with the model, so evaluate, predict, serve and export "
            "apply the same",
            "choices": ("none", *STAIN_METHODS),
        },
    )
    #: The reference image for it; None = the first train image of the manifest (path order).
    stain_target: str | None = field(
        default=None,
        metadata={
            "help": "reference image for --stain-norm (not given: the first train image of "
            "the manifest, in path order)",
            "metavar": "FILE",
        },
    )
    #: The model sees only the white cells (`data.cells`): everything the finder does not mark
    #: is set to neutral grey, in training and at every inference, so that background, red
    #: cells and the scale bar (which differ by slide batch, and so by class) cannot decide.
    cells_only: bool = field(
        default=False,
        metadata={
            "help": "show the model only the white cells the finder marks (the rest neutral "
            "grey), in training and inference alike; saved with the model's preprocessing"
        },
    )
    #: Drop the colour after that (luminance in all three channels): shape and texture stay,
    #: the stain's hue (which differs by slide batch) goes.
    grayscale: bool = field(
        default=False,
        metadata={
            "help": "drop the colour before the model (luminance in all three channels), in "
            "training and inference alike"
        },
    )
    #: Instead of the cells' colours, their lightness standardised over the cells on a flat
    #: background (`data.colour`): the stain's hue and strength, the lamp and the exposure,
    #: which differ by slide batch, cannot decide; shape and texture do.
    lightness: bool = field(
        default=False,
        metadata={
            "help": "show the model the white cells' lightness, standardised over the cells, "
            "instead of their colours (needs --cells-only), in training and inference alike"
        },
    )
    #: With `lightness`, keep the cells' colour variation around neutral (standardised):
    #: nucleus and cytoplasm still differ in tint, the stain's hue and strength are gone.
    chroma: bool = field(
        default=False,
        metadata={
            "help": "with --lightness, also show the cells' colour variation around neutral, "
            "standardised (tint differences inside a cell, not the stain's hue)"
        },
    )
    #: What the lightness view is put on a common scale against: the cells' own mean and
    #: spread, or the slide's white around them (keeps how dark each cell is stained).
    lightness_reference: str = field(
        default="cells",
        metadata={
            "help": "with --lightness: scale the cells' lightness by their own mean and spread "
            "(cells) or against the slide's white around them (slide)",
            "choices": ("cells", "slide"),
        },
    )
    #: The white-cell finder balances each image's white first (`data.cells`): a dimmer or
    #: brighter lamp finds the same cells.
    white_balance: bool = field(
        default=False,
        metadata={
            "help": "balance each image's white before finding its white cells, so that "
            "exposure does not move them"
        },
    )
    #: Measure each image's magnification on its red cells (`data.scale`) and bring images at
    #: another scale to the training images' scale first; every answer records the scale.
    match_scale: bool = field(
        default=False,
        metadata={
            "help": "measure each image's scale on its red cells and resize images at another "
            "magnification to the training scale first, in training and inference alike"
        },
    )
    #: Folders of white cells the model must not name (neutrophils, monocytes, mature
    #: lymphocytes, ...): trained on with outlier exposure (`train.outliers`), then refused by
    #: the cell-type gate (`models.cell_gate`).
    outliers: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "folders of white cells of other types (neutrophils, monocytes, "
            "lymphocytes, ...) to train the model to refuse (outlier exposure)",
            "metavar": "DIR",
        },
    )
    #: The weight of the outliers' loss against the classes' cross-entropy.
    outlier_weight: float = field(
        default=0.5,
        metadata={"help": "weight of the outlier-exposure loss", "min": 0},
    )
    #: Share of each outlier folder's files trained on (by a hash of the file name); the rest
    #: are held back to measure refusals of unseen cells of trained-on types.
    outlier_share: float = field(
        default=0.7,
        metadata={
            "help": "share of each outlier folder's files trained on (chosen by a hash of the "
            "file name); the rest are held back for evaluation",
            "min": 0.05,
            "max": 1.0,
        },
    )
    #: Share of in-scope validation images the cell-type gate keeps.
    gate_acceptance: float = field(
        default=0.995,
        metadata={
            "help": "share of in-scope validation images the cell-type gate accepts",
            "metavar": "P",
            "min": 0.5,
            "below": 1.0,
        },
    )
    #: With cached block outputs, also flip and turn them by 90 degrees (smears have no
    #: orientation); free augmentation that needs no second pass through the frozen blocks.
    feature_aug: bool = field(
        default=False,
        metadata={"help": "with cached block outputs, flip and turn them by 90 degrees each batch"},
    )
    #: With cached outputs, cache this many extra copies of the train split under random
    #: microscope/stain/camera corruptions (`data.corruptions`); each epoch draws every image
    #: from one of the copies at random.
    corrupt_copies: int = field(
        default=0,
        metadata={
            "help": "with cached block outputs, also cache N copies of the train split under "
            "random stain/colour/blur/JPEG/scale/noise corruptions; each epoch draws every "
            "image from one copy at random",
            "metavar": "N",
            "min": 0,
        },
    )
    #: The strongest severity (1-3, see `data.corruptions`) those copies are drawn up to.
    corrupt_severity: int = field(
        default=2,
        metadata={"help": "strongest corruption severity in those copies", "choices": (1, 2, 3)},
    )
    #: The strongest severity of the random exposure change (darken/brighten) on those copies.
    exposure_severity: int = field(
        default=2,
        metadata={
            "help": "strongest random exposure change (darken/brighten) added to every "
            "corrupted image",
            "choices": (1, 2, 3),
        },
    )
    #: The strongest random defocus (Gaussian blur, 0 = none) added to every corrupted image
    #: before the other changes; 0 leaves focus to the random corruption alone.
    focus_severity: int = field(
        default=0,
        metadata={
            "help": "strongest random defocus (Gaussian blur) added to every corrupted image "
            "before the other changes (0 = none)",
            "choices": (0, 1, 2, 3),
        },
    )
    #: Which epoch becomes the model: "best" (highest val accuracy; lower val loss on ties) or
    #: "last" (the end of the schedule, e.g. one-cycle's annealed weights).
    checkpoint: str = field(
        default="best",
        metadata={
            "help": "which epoch becomes model/: best on validation accuracy, or the last one",
            "choices": ("best", "last"),
        },
    )
    #: Share of in-scope (validation) images the out-of-scope detector fitted after training
    #: lets through (`models.scope_detector`); None fits no detector (cross-validation folds).
    ood_acceptance: float | None = field(
        default=0.99,
        metadata={
            "help": "share of in-scope validation images the out-of-scope detector accepts; "
            "images scoring beyond that threshold get no class",
            "metavar": "P",
            "min": 0.5,
            "below": 1.0,
        },
    )
    recipe: str = field(
        default="reference",
        metadata={"help": "named settings to start from; BENCHMARKS.md compares them"},
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            self.check(f.name, getattr(self, f.name))
        if self.lightness and not self.cells_only:
            raise ValueError("lightness standardises the white cells: it needs cells_only")
        if self.lightness and self.grayscale:
            raise ValueError("lightness already drops the colour: leave grayscale off")
        if self.chroma and not self.lightness:
            raise ValueError("chroma is part of the lightness view: it needs lightness")
        if self.cells_only and self.stain_norm != "none":
            # Measured: Macenko maps this dataset's grey-blue red cells onto the nuclear stain,
            # so red and white cells come out the same dark blue and the finder finds no white
            # cell in 44 of 47 fields; the model then sees blank images and learns nothing.
            raise ValueError(
                f"stain_norm {self.stain_norm!r} cannot be combined with cells_only: it stains "
                "the red cells like the white cells, so the white-cell finder finds none and "
                "the model sees blank images; use --lightness (the shape recipes) to make the "
                "stain not matter instead"
            )

    @classmethod
    def check(cls, name: str, value: Any) -> None:
        """Raise ValueError when `value` is not allowed for setting `name`: outside its field's
        `choices`, `min`, `max` or `below` metadata, or not a `freeze` value. One setting at a
        time, so that the command line can check each option as it reads it."""
        meta = cls.__dataclass_fields__[name].metadata
        if value is None:
            return
        if "choices" in meta and value not in meta["choices"]:
            allowed = ", ".join(map(str, meta["choices"]))
            raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        if "min" in meta and value < meta["min"]:
            raise ValueError(f"{name} must be at least {meta['min']}, not {value!r}")
        if "max" in meta and value > meta["max"]:
            raise ValueError(f"{name} must be at most {meta['max']}, not {value!r}")
        if "below" in meta and value >= meta["below"]:
            raise ValueError(f"{name} must be below {meta['below']}, not {value!r}")
        if name == "freeze" and value not in FREEZE_NAMES and not str(value).isdigit():
            raise ValueError(
                f"freeze must be 'frozen', 'finetune' or a number of blocks, not {value!r}"
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
            cells=CellFinder(white_balance=self.white_balance).to_dict()
            if self.cells_only
            else None,
            grayscale=self.grayscale,
            lightness=self.lightness,
            red_cell_px=TRAINING_RED_CELL_PX if self.match_scale else None,
            chroma=self.chroma,
            lightness_reference=self.lightness_reference,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if "outliers" in values:  # a JSON list
            values["outliers"] = tuple(values["outliers"] or ())
        return cls(**values)

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
    # The default of `bloodcell run` before the cells recipes: ImageNet MobileNetV2, its first 14
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
# The `fast` recipe on the white cells alone: the finder's cells on neutral grey, in training
# and at inference, so that the slide around them cannot decide (BENCHMARKS.md, "See the cells").
RECIPES["cells"] = replace(RECIPES["fast"], cells_only=True, recipe="cells")
# The same without colour: the cells' shape and texture, not their stain's hue.
RECIPES["cells_gray"] = replace(RECIPES["cells"], grayscale=True, recipe="cells_gray")
# The cells' shape and texture, not their stain (BENCHMARKS.md, "Know the cell, not its
# stain"): the cells' lightness against the slide's white and their tint variation, with a*
# and b* standardised over the cells, so the stain's hue cannot decide; the finder balances
# each image's white first, and images at another magnification are brought to the training
# scale. `bloodcell run` and `make run` add the outlier folders (`--outliers`).
RECIPES["shape"] = replace(
    RECIPES["cells"],
    lightness=True,
    chroma=True,
    lightness_reference="slide",
    white_balance=True,
    match_scale=True,
    recipe="shape",
)
#: What `bloodcell run` and `bloodcell cv` train: the answer comes from the white cells.
DEFAULT_RECIPE = "shape"


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
