"""The training recipe as one validated, serialisable object.

The runners build a TrainConfig from their flags (one flag per field, help text from the field);
the Trainer receives it as `custom_config` (JSON) and rebuilds it, so every knob is checked once,
with a clear message, before any work.
"""
import dataclasses
import json
import math
from typing import Any, Dict, Sequence, Tuple

from trainer_module import image_format, names
from trainer_module.knobs import choices_of, knob

MODEL_VARIANTS = ("small", "large")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "step")
# Named recipes (pipeline/recipes.py holds their values); "auto" lets the runner pick one.
RECIPES = ("auto", "notebook", "cpu", "gpu", "demo")


class ConfigError(ValueError):
    """A training knob has a value the Trainer cannot use."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the Trainer (a recipe fills the knobs nobody set: pipeline/recipes.py)."""

    class_names: Tuple[str, ...] = knob((), "label space, in label order (set from the data by the runner)")
    recipe: str = knob("auto", "named preset of the knobs below (pipeline/recipes.py; a knob set by flag, "
                               "environment or settings file wins): notebook (the notebook's: 224 of 256, "
                               "ImageNet weights, SGD 0.01, step decay), cpu (best from scratch on a CPU), "
                               "gpu (ImageNet weights on a GPU), demo (cpu, few epochs); auto: demo on the "
                               "generated demo data, else gpu when a GPU is visible, else cpu", RECIPES)
    # Images.
    resize_size: int = knob(256, "Transform resizes every image to this square side (pixels)")
    image_size: int = knob(224, "training crop side: training takes random crops of the resized image "
                                "(>= 32, <= resize size); evaluation and serving take the centre crop of "
                                "test_image_size")
    test_image_size: int = knob(0, "centre-crop side evaluation and serving (the SavedModel, the TFLite models, "
                                   "the Evaluators) feed the network (0: image_size, <= resize_size); above "
                                   "image_size the network, fully convolutional with global pooling, sees more "
                                   "of the image at the scale it trained on (a FixRes train-test resolution "
                                   "discrepancy), at (test_image_size / image_size)^2 the inference cost")
    random_flip: bool = knob(True, "mirror training crops left-right with probability 1/2", advanced=True)
    crop_area_min: float = knob(0.0, "scale augmentation: each training crop covers a random share in "
                                     "[crop_area_min, 1] of the resized image's area (aspect ratio 3/4 to 4/3), "
                                     "resized to image_size (Inception-style random-resized crop); 0 takes "
                                     "plain image_size crops at the resized scale", advanced=True)
    color_jitter: float = knob(0.0, "colour augmentation: each training crop's brightness, contrast and "
                                    "saturation are scaled by factors drawn from [1 - s, 1 + s]; 0 disables",
                                    advanced=True)
    progressive_start_size: int = knob(0, "progressive resizing: the first epoch's training crops are scaled "
                                          "down to this side, the side growing linearly, in steps of 16 px, "
                                          "to image_size at progressive_end_fraction of the epochs (an early "
                                          "epoch costs about (side / image_size)^2 of a full one); 0 disables",
                                          advanced=True)
    progressive_end_fraction: float = knob(0.5, "progressive resizing: share of the epochs after which "
                                                "training runs at image_size", advanced=True)
    # CutMix.
    cutmix_probability: float = knob(0.5, "share of training images that get a CutMix box pasted from "
                                          "another image of the batch (the notebook: a uniform draw > 0.5); "
                                          "0 disables")
    cutmix_alpha: float = knob(1.0, "CutMix box area is 1 - Beta(alpha, alpha) of the image", advanced=True)
    mixup_probability: float = knob(0.0, "share of training images blended with another image of the batch "
                                         "(MixUp, after CutMix); 0 disables")
    mixup_alpha: float = knob(0.2, "MixUp weight of the partner image is min(l, 1 - l), l ~ Beta(alpha, alpha)",
                              advanced=True)
    # Model.
    model_variant: str = knob("small", "MobileNetV3 variant", MODEL_VARIANTS)
    alpha: float = knob(1.0, "MobileNetV3 width multiplier", advanced=True)
    minimalistic: bool = knob(False, "MobileNetV3 minimalistic blocks (no squeeze-excite, no hard-swish)",
                              advanced=True)
    weights: str = knob("none", "backbone weights: none (from scratch), imagenet (Keras download) or a "
                                "local .h5 file without top")
    weights_md5: str = knob("published", "md5 a local weights file must have: 'published' (Keras' ImageNet "
                                         "file for this variant), a hex digest, or '' to skip the check", advanced=True)
    frozen_backbone_epochs: int = knob(0, "epochs training the head only, with the backbone frozen, before "
                                          "fine-tuning everything (useful with pretrained weights)")
    fine_tune_lr_factor: float = knob(0.1, "fine-tuning learning rate as a fraction of learning_rate, "
                                           "after frozen-backbone epochs", advanced=True)
    dropout: float = knob(0.2, "dropout before the classification layer", advanced=True)
    bn_momentum: float = knob(0.9, "BatchNorm momentum for a backbone trained from scratch: Keras' 0.999 "
                                   "needs thousands of steps to settle, and short runs then score chance",
                              advanced=True)
    test_time_flip: bool = knob(False, "evaluation and serving average the predictions of the image and its "
                                       "mirror image (twice the inference cost)")
    temperature_scaling: bool = knob(True, "after training, fit a temperature T on the eval split (least "
                                           "negative log-likelihood) and serve softmax(logits / T), in the "
                                           "SavedModel and the TFLite models: calibrated probabilities, the "
                                           "same argmax (accuracy unchanged); the history and the report "
                                           "give the expected calibration error before and after")
    bn_recalibration_batches: int = knob(20, "after training, re-estimate BatchNorm statistics over this "
                                             "many un-augmented train batches, kept only if they lower the "
                                             "train loss; 0 skips", advanced=True)
    # Optimisation.
    batch_size: int = knob(64, "examples per step on each replica (GPU); the global batch scales with them")
    epochs: int = knob(5, "passes over the training examples, frozen-backbone epochs included")
    learning_rate: float = knob(0.01, "peak learning rate")
    optimizer: str = knob("sgd", "optimizer (sgd has momentum)", OPTIMIZERS)
    momentum: float = knob(0.9, "momentum of the SGD optimizer (sgd only)", advanced=True)
    weight_decay: float = knob(0.0, "decoupled weight decay of the optimizer; 0 turns it off, for AdamW too")
    schedule: str = knob("constant", "learning-rate schedule: constant, linear warmup then cosine decay "
                                     "(Keras CosineDecay), or step decay (Keras ExponentialDecay, staircase)",
                         SCHEDULES)
    warmup_epochs: float = knob(1.0, "warmup_cosine: length of the linear warmup")
    cosine_final_fraction: float = knob(0.0, "warmup_cosine: final learning rate as a fraction of the peak",
                                        advanced=True)
    step_every_epochs: int = knob(3, "step: epochs between decays (the notebook's best run: 3)")
    step_factor: float = knob(0.1, "step: learning-rate multiplier at each decay")
    label_smoothing: float = knob(0.0, "label smoothing of the categorical cross-entropy")
    ema_momentum: float = knob(0.0, "keep an exponential moving average of the weights with this momentum "
                                    "(Keras optimizer EMA) and export it instead of the last weights; 0 disables")
    precision: str = knob("auto", "numeric policy; auto is mixed_float16 on GPU and float32 on CPU "
                                  "(where float16 is slow)", PRECISIONS, advanced=True)
    # Edge models.
    tflite_export: bool = knob(True, "also export TFLite models of the trained network (float16 and full-integer "
                                     "int8, uint8 RGB input at image_size) with labels and input spec in their "
                                     "metadata")
    tflite_calibration_images: int = knob(256, "int8: representative train images (centre crops through the "
                                               "Transform graph) that calibrate the quantization ranges", advanced=True)
    # Input pipeline.
    shuffle_buffer: int = knob(2048, "shuffle buffer of serialized records (~15 KB each) when decoded "
                                     "images are not kept in memory", advanced=True)
    decoded_cache_gb: float = knob(4.0, "keep the decoded uint8 images (resize_size^2 * 3 bytes each) in "
                                        "memory after the first epoch when train + eval fit in this many "
                                        "GB; 0 decodes every epoch", advanced=True)
    seed: int = knob(42, "seed of weights, shuffling and augmentation", advanced=True)

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the first bad knob."""
        if len(self.class_names) < 2:
            raise ConfigError(f"class_names needs at least 2 classes, got {list(self.class_names)}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class_names has duplicates: {list(self.class_names)}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name}={value!r}: must be a finite number")
            choices = choices_of(field)
            if choices is not None:
                _check(value in choices, field.name, value, f"must be one of {choices}")
        # Knobs others depend on come first, so a message names the knob the user set.
        _check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _check(self.image_size >= 32, "image_size", self.image_size, "must be >= 32")
        _check(self.resize_size >= self.image_size, "resize_size", self.resize_size,
               f"must be >= image_size ({self.image_size}): the crop cannot be larger than the image")
        _check(self.test_image_size == 0 or 32 <= self.test_image_size <= self.resize_size, "test_image_size",
               self.test_image_size, f"must be 0 (image_size) or in [32, resize_size={self.resize_size}]")
        _check(self.crop_area_min == 0 or 0.05 <= self.crop_area_min <= 1.0, "crop_area_min", self.crop_area_min,
               "must be 0 (plain crops) or in [0.05, 1]")
        _check(0.0 <= self.color_jitter < 1.0, "color_jitter", self.color_jitter, "must be in [0, 1)")
        _check(self.progressive_start_size == 0 or 32 <= self.progressive_start_size <= self.image_size,
               "progressive_start_size", self.progressive_start_size,
               f"must be 0 (off) or in [32, image_size={self.image_size}]")
        _check(0.0 < self.progressive_end_fraction <= 1.0, "progressive_end_fraction",
               self.progressive_end_fraction, "must be in (0, 1]")
        _check(self.alpha > 0, "alpha", self.alpha, "must be > 0")
        _check(0.0 <= self.cutmix_probability <= 1.0, "cutmix_probability", self.cutmix_probability,
               "must be in [0, 1]")
        _check(self.cutmix_alpha > 0, "cutmix_alpha", self.cutmix_alpha, "must be > 0")
        _check(0.0 <= self.mixup_probability <= 1.0, "mixup_probability", self.mixup_probability,
               "must be in [0, 1]")
        _check(self.mixup_alpha > 0, "mixup_alpha", self.mixup_alpha, "must be > 0")
        _check(0.0 <= self.ema_momentum < 1.0, "ema_momentum", self.ema_momentum, "must be in [0, 1)")
        _check(0 <= self.frozen_backbone_epochs < self.epochs, "frozen_backbone_epochs",
               self.frozen_backbone_epochs, f"must be in [0, epochs={self.epochs})")
        _check(0.0 < self.fine_tune_lr_factor <= 1.0, "fine_tune_lr_factor", self.fine_tune_lr_factor,
               "must be in (0, 1]")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        _check(0.0 < self.bn_momentum < 1.0, "bn_momentum", self.bn_momentum, "must be in (0, 1)")
        _check(self.bn_recalibration_batches >= 0, "bn_recalibration_batches",
               self.bn_recalibration_batches, "must be >= 0")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.weights_md5 in ("", "published") or len(self.weights_md5) == 32, "weights_md5",
               self.weights_md5, "must be 'published', '' or a 32-character md5 hex digest")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(0.0 <= self.momentum < 1.0, "momentum", self.momentum, "must be in [0, 1)")
        _check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "must be >= 0")
        _check(0.0 <= self.cosine_final_fraction <= 1.0, "cosine_final_fraction",
               self.cosine_final_fraction, "must be in [0, 1]")
        _check(self.step_every_epochs >= 1, "step_every_epochs", self.step_every_epochs, "must be >= 1")
        _check(0.0 < self.step_factor <= 1.0, "step_factor", self.step_factor, "must be in (0, 1]")
        _check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing,
               "must be in [0, 1)")
        _check(self.tflite_calibration_images >= 1, "tflite_calibration_images",
               self.tflite_calibration_images, "must be >= 1")
        _check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, "must be >= 1")
        _check(self.decoded_cache_gb >= 0, "decoded_cache_gb", self.decoded_cache_gb, "must be >= 0")
        _check(self.weights == "none" or self.weights == "imagenet" or self.weights.endswith(".h5"),
               "weights", self.weights, "must be 'none', 'imagenet' or a path to a .h5 weights file")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def served_image_size(self) -> int:
        """The side of the centre crop evaluation and serving feed the network (test_image_size)."""
        return self.test_image_size or self.image_size

    def training_side(self, epoch: int) -> int:
        """The side the training crops of `epoch` (0-based) are fed to the network at: image_size,
        or with progressive resizing the start side growing linearly, in 16 px steps, to image_size
        at progressive_end_fraction of the epochs (the last epoch is always at image_size)."""
        ramp = self.progressive_end_fraction * (self.epochs - 1)  # the last epoch is always at image_size
        if not self.progressive_start_size or epoch >= ramp:
            return self.image_size
        start = self.progressive_start_size
        return start + 16 * int((self.image_size - start) * epoch / ramp // 16)

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


def transform_config(class_names: Sequence[str], resize_size: int,
                     max_image_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS) -> Dict[str, Any]:
    """The Transform component's custom_config: all preprocessing_fn depends on (the pixel
    budget too: the Transform graph, so serving, refuses an image over it before decoding)."""
    return {names.TRANSFORM_CLASS_NAMES_KEY: list(class_names),
            names.TRANSFORM_RESIZE_SIZE_KEY: int(resize_size),
            names.MAX_IMAGE_PIXELS_KEY: int(max_image_pixels)}
