"""The training recipe as one validated, serialisable object.

pipeline/configs.py holds the values; the Trainer receives them as `custom_config` (JSON) and
rebuilds a TrainConfig, so every knob is checked once, with a clear message, before any work.
"""
import dataclasses
import json
from typing import Any, Dict, Sequence, Tuple

MODEL_VARIANTS = ("small", "large")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "step")


# The Trainer's custom_config holds the TrainConfig under this key (beside any keys of the
# Google Cloud AI Platform extension when training on Vertex AI).
TRAIN_CONFIG_KEY = "train_config"


class ConfigError(ValueError):
    """A training knob has a value the Trainer cannot use."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the Trainer (defaults: the notebook's recipe)."""

    class_names: Tuple[str, ...] = ()
    # Images: Transform resizes to resize_size; training takes random image_size crops of it,
    # evaluation and serving the centre crop.
    resize_size: int = 256
    image_size: int = 224
    random_flip: bool = True
    # CutMix: applied to an image when a uniform draw exceeds 1 - probability (0 disables);
    # the pasted area fraction is 1 - Beta(alpha, alpha).
    cutmix_probability: float = 0.5
    cutmix_alpha: float = 1.0
    # Model.
    model_variant: str = "small"
    alpha: float = 1.0
    minimalistic: bool = False
    weights: str = "none"  # "none", "imagenet", or a local .h5 weights file (no top)
    # md5 a local weights file must have: "published" (Keras' ImageNet file for this variant),
    # a hex digest (your own file), or "" to skip the check.
    weights_md5: str = "published"
    # Epochs with the backbone frozen (head only) before fine-tuning everything at
    # learning_rate * fine_tune_lr_factor. Useful with pretrained weights.
    frozen_backbone_epochs: int = 0
    fine_tune_lr_factor: float = 0.1
    dropout: float = 0.2
    # BatchNorm momentum for layers trained from scratch: Keras' MobileNetV3 uses 0.999, whose
    # moving averages need thousands of steps to settle; short runs then score chance.
    bn_momentum: float = 0.9
    # After training, re-estimate BatchNorm statistics over this many train batches (centre
    # crops, no augmentation), kept only if they lower the loss on those train images; 0 skips.
    bn_recalibration_batches: int = 20
    # Optimisation.
    batch_size: int = 64
    epochs: int = 5
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 1.0  # warmup_cosine: linear warmup length
    cosine_final_fraction: float = 0.0  # warmup_cosine: final LR as a fraction of the peak
    step_every_epochs: int = 3  # step: decay interval (the notebook's best run)
    step_factor: float = 0.1  # step: multiplier at each interval
    label_smoothing: float = 0.0
    # "auto": mixed_float16 on GPU, float32 on CPU (where float16 is slow).
    precision: str = "auto"
    # Input pipeline: records are shuffled as serialized bytes (~15 KB each), never as pixels.
    shuffle_buffer: int = 2048
    # Keep the decoded uint8 images (resize_size^2 * 3 bytes each: 196 KB at 256) in memory after
    # the first epoch when train + eval fit in this many GB; 0 decodes every epoch. On 2 CPU cores
    # per-epoch decoding cost 4-15 % of training throughput (bench/trainer_input.py).
    decoded_cache_gb: float = 4.0
    seed: int = 42

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the first bad knob."""
        if len(self.class_names) < 2:
            raise ConfigError(f"class_names needs at least 2 classes, got {list(self.class_names)}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class_names has duplicates: {list(self.class_names)}")
        _check(self.image_size >= 32, "image_size", self.image_size, "must be >= 32")
        _check(self.resize_size >= self.image_size, "resize_size", self.resize_size,
               f"must be >= image_size ({self.image_size}): the crop cannot be larger than the image")
        _check(self.model_variant in MODEL_VARIANTS, "model_variant", self.model_variant,
               f"must be one of {MODEL_VARIANTS}")
        _check(self.alpha > 0, "alpha", self.alpha, "must be > 0")
        _check(0.0 <= self.cutmix_probability <= 1.0, "cutmix_probability", self.cutmix_probability,
               "must be in [0, 1]")
        _check(self.cutmix_alpha > 0, "cutmix_alpha", self.cutmix_alpha, "must be > 0")
        _check(0 <= self.frozen_backbone_epochs < self.epochs, "frozen_backbone_epochs",
               self.frozen_backbone_epochs, f"must be in [0, epochs={self.epochs})")
        _check(0.0 < self.fine_tune_lr_factor <= 1.0, "fine_tune_lr_factor", self.fine_tune_lr_factor,
               "must be in (0, 1]")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.precision in PRECISIONS, "precision", self.precision, f"must be one of {PRECISIONS}")
        _check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        _check(0.0 < self.bn_momentum < 1.0, "bn_momentum", self.bn_momentum, "must be in (0, 1)")
        _check(self.bn_recalibration_batches >= 0, "bn_recalibration_batches",
               self.bn_recalibration_batches, "must be >= 0")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _check(self.weights_md5 in ("", "published") or len(self.weights_md5) == 32, "weights_md5",
               self.weights_md5, "must be 'published', '' or a 32-character md5 hex digest")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"must be one of {OPTIMIZERS}")
        _check(0.0 <= self.momentum < 1.0, "momentum", self.momentum, "must be in [0, 1)")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, f"must be one of {SCHEDULES}")
        _check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "must be >= 0")
        _check(0.0 <= self.cosine_final_fraction <= 1.0, "cosine_final_fraction",
               self.cosine_final_fraction, "must be in [0, 1]")
        _check(self.step_every_epochs >= 1, "step_every_epochs", self.step_every_epochs, "must be >= 1")
        _check(0.0 < self.step_factor <= 1.0, "step_factor", self.step_factor, "must be in (0, 1]")
        _check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing,
               "must be in [0, 1)")
        _check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, "must be >= 1")
        _check(self.decoded_cache_gb >= 0, "decoded_cache_gb", self.decoded_cache_gb, "must be >= 0")
        _check(self.weights == "none" or self.weights == "imagenet" or self.weights.endswith(".h5"),
               "weights", self.weights, "must be 'none', 'imagenet' or a path to a .h5 weights file")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Builds a config from a dict, rejecting unknown keys (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def _check(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {rule}")


def transform_config(class_names: Sequence[str], resize_size: int) -> Dict[str, Any]:
    """The Transform component's custom_config: all preprocessing_fn depends on."""
    return {"class_names": list(class_names), "resize_size": int(resize_size)}
