"""The classifier: a Keras MobileNetV3 backbone with a small classification head."""
import hashlib

import tensorflow as tf
import tf_keras as keras

from trainer_module import keras_tracing
from trainer_module.train_config import ConfigError, TrainConfig

# Every model traced in a process is built here: its traces leave Keras' own code unconverted.
keras_tracing.leave_keras_unconverted()

HEAD_LAYER = "probabilities"  # build_model's classification layer (Dense with softmax)
LOGITS_LAYER = "logits"  # the inference model's copy of it without the softmax
TEMPERATURE_LAYER = "temperature"
_BACKBONES = {"small": keras.applications.MobileNetV3Small, "large": keras.applications.MobileNetV3Large}


class WeightsChecksumError(ValueError):
    """A local weights file is not the file it claims to be."""


def published_weights_md5(cfg: TrainConfig) -> str:
    """Keras' published md5 of the no-top ImageNet weights for this variant."""
    from tf_keras.src.applications.mobilenet_v3 import WEIGHTS_HASHES

    key = f"{cfg.model_variant}{'_minimalistic' if cfg.minimalistic else ''}_224_{cfg.alpha}_float"
    if key not in WEIGHTS_HASHES:
        raise ConfigError(f"no published ImageNet weights for {key}; available: {sorted(WEIGHTS_HASHES)}")
    return WEIGHTS_HASHES[key][1]


def check_weights_file(cfg: TrainConfig) -> None:
    """Raises unless cfg.weights exists and has the expected md5 (see TrainConfig.weights_md5)."""
    if not tf.io.gfile.exists(cfg.weights):
        raise ConfigError(f"weights file not found: {cfg.weights}")
    expected = published_weights_md5(cfg) if cfg.weights_md5 == "published" else cfg.weights_md5
    if not expected:
        return
    digest = hashlib.md5()
    with tf.io.gfile.GFile(cfg.weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise WeightsChecksumError(f"{cfg.weights} has md5 {digest.hexdigest()}, expected {expected}")


def build_backbone(cfg: TrainConfig) -> keras.Model:
    """MobileNetV3 without its top; its own rescaling layer takes pixels in [0, 255]. Any input
    side: training crops (image_size, smaller with progressive resizing) and evaluation and serving
    crops (test_image_size) go through the same network."""
    local_file = cfg.weights not in ("none", "imagenet")
    if local_file:
        check_weights_file(cfg)
    backbone = _BACKBONES[cfg.model_variant](
        input_shape=(None, None, 3), alpha=cfg.alpha,
        minimalistic=cfg.minimalistic, include_top=False,
        weights="imagenet" if cfg.weights == "imagenet" else None, include_preprocessing=True)
    if local_file:
        backbone.load_weights(cfg.weights)
    if cfg.weights == "none":
        set_batchnorm_momentum(backbone, cfg.bn_momentum)
    return backbone


def build_model(cfg: TrainConfig) -> keras.Model:
    """Backbone + global average pooling, dropout and a float32 softmax (safe under mixed precision).

    The input side is left open (fully convolutional, then global pooling): the training crops
    and the evaluation/serving crops may differ in size (TrainConfig.test_image_size,
    progressive_start_size); each caller fixes it (the signatures and the TFLite converter trace
    cfg.served_image_size)."""
    backbone = build_backbone(cfg)
    inputs = keras.Input((None, None, 3), name="image")
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(cfg.num_classes, activation="softmax", dtype="float32",
                                 name=HEAD_LAYER)(x)
    return keras.Model(inputs, outputs, name=f"mobilenetv3_{cfg.model_variant}_classifier")


class Temperature(keras.layers.Layer):
    """logits / temperature, the temperature a constant of the graph (calibration.py fits it)."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def call(self, logits):
        return logits * (1.0 / self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def logits_model(model: keras.Model, cfg: TrainConfig) -> keras.Model:
    """The trained network's logits (the head without its softmax), averaged over the image and its
    mirror image when cfg.test_time_flip.

    Test-time flip averaging: the training crops are mirrored at random, so both views are in
    distribution; it doubles the inference cost (the cpu recipe's ablation in bench/RESULTS.md
    measures what it buys). The images and their mirrors go through the network as one batch: one
    call, so a converted (TFLite int8) model holds one copy of its quantized weights. The views'
    logits are averaged, not their probabilities: the average then has logits, which temperature
    scaling divides without changing its argmax, and the int8 model needs no logarithm to get them
    back (an 8-bit LOG of probabilities would merge close scores). The softmax of the mean logits
    is the normalised geometric mean of the views' probabilities.
    The weights are shared with `model`, the head's copied.
    """
    head = model.get_layer(HEAD_LAYER)
    features = keras.Model(model.input, head.input, name=f"{model.name}_features")  # dropout: identity here
    logits_layer = keras.layers.Dense(head.units, dtype="float32", name=LOGITS_LAYER)
    inputs = keras.Input(model.input_shape[1:], name="image")
    if cfg.test_time_flip:
        both = keras.layers.Lambda(lambda x: tf.concat([x, tf.reverse(x, axis=[2])], axis=0),
                                   name="with_mirror")(inputs)
        logits = keras.layers.Lambda(lambda s: 0.5 * tf.add_n(tf.split(s, 2, axis=0)), name="flip_average",
                                     dtype="float32")(logits_layer(features(both)))
    else:
        logits = logits_layer(features(inputs))
    logits_layer.set_weights(head.get_weights())
    return keras.Model(inputs, logits, name=f"{model.name}{'_flip_averaged' if cfg.test_time_flip else ''}_logits")


def inference_model(model: keras.Model, cfg: TrainConfig, temperature: float = 1.0) -> keras.Model:
    """What evaluation, serving and the edge models run: softmax(logits_model / temperature), the
    trained model itself when there is neither flip averaging nor a temperature to apply."""
    if not cfg.test_time_flip and temperature == 1.0:
        return model
    logits = logits_model(model, cfg)
    scaled = Temperature(temperature, dtype="float32", name=TEMPERATURE_LAYER)(logits.output)
    probabilities = keras.layers.Softmax(dtype="float32", name=HEAD_LAYER)(scaled)
    return keras.Model(logits.input, probabilities, name=f"{model.name}_inference")


def temperature_of(model: keras.Model) -> float:
    """The temperature an inference model divides its logits by (1.0 without a Temperature layer)."""
    layer = next((l for l in model.submodules if isinstance(l, Temperature)), None)
    return 1.0 if layer is None else layer.temperature


def weights_only_copy(model: keras.Model) -> keras.Model:
    """A copy of the trained model with its weights (BatchNorm statistics included) and without its
    training state. Why: a compiled model tracks its optimizer, so saving it saves the momentum
    slots and the EMA copies too, twice the weights' bytes, which serving would load for nothing."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def backbone_of(model: keras.Model) -> keras.Model:
    """The MobileNetV3 sub-model inside a model from build_model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Sets every BatchNormalization layer's momentum (read at call time); returns how many."""
    count = 0
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
            count += 1
    return count


def recalibrate_batchnorm(model: keras.Model, dataset, batches: int) -> int:
    """Re-estimates every BatchNorm layer's moving mean/variance as the plain average over
    `batches` batches of `dataset` (images, labels); returns the batches used.

    Why: moving averages with momentum lag the weights; after a short from-scratch run they
    still describe the random initial network and the model predicts one class at inference
    ("precise BN", Wu & Johnson 2021). Momentum (k-1)/k at the k-th batch turns Keras' update
    into a cumulative average. Runs eagerly so the per-batch momentum is read on every call.
    """
    layers = [l for l in model.submodules
              if isinstance(l, keras.layers.BatchNormalization) and l.trainable]
    saved = [l.momentum for l in layers]
    used = 0
    try:
        for used, (images, _) in enumerate(dataset.take(batches), start=1):
            for layer in layers:
                layer.momentum = (used - 1) / used
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return used


def recalibrate_batchnorm_if_better(model: keras.Model, dataset, batches: int) -> dict:
    """Re-estimates BatchNorm statistics over `batches` train batches and keeps them only if the
    model's loss on those same (un-augmented) training images improves.

    Why the check: after a short run the moving averages still describe the initial network and
    the re-estimate rescues a model that predicts one class; after a long run with a decayed
    learning rate they already fit, and the re-estimate can make the model clearly worse
    (bench/RESULTS.md has the measurements). The decision uses training images only, never the
    eval split.
    """
    layers = [l for l in model.submodules if isinstance(l, keras.layers.BatchNormalization)]
    saved = [(l.moving_mean.numpy(), l.moving_variance.numpy()) for l in layers]
    sample = dataset.take(batches)
    loss_before = model.evaluate(sample, verbose=0, return_dict=True)["loss"]
    used = recalibrate_batchnorm(model, sample, batches)
    loss_after = model.evaluate(sample, verbose=0, return_dict=True)["loss"]
    kept = loss_after < loss_before
    if not kept:
        for layer, (mean, variance) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    return {"batches": used, "train_loss_before": float(loss_before),
            "train_loss_after": float(loss_after), "kept": bool(kept)}


def make_optimizer(cfg: TrainConfig, learning_rate) -> keras.optimizers.Optimizer:
    """SGD (with momentum), Adam or AdamW at the given learning rate or schedule.

    cfg.weight_decay is the decoupled decay of every optimizer; 0 means none, AdamW included
    (not Keras' AdamW default of 0.004). cfg.ema_momentum > 0 keeps a moving average of the weights.
    """
    # Keras' EMA: fit() swaps the averaged weights in when it ends (finalize_variable_values).
    ema = {"use_ema": cfg.ema_momentum > 0, "ema_momentum": cfg.ema_momentum or 0.99}
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay or None, **ema)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=cfg.weight_decay or None, **ema)
    # AdamW requires a number (None is an error); 0.0 decays nothing.
    return keras.optimizers.AdamW(learning_rate, weight_decay=cfg.weight_decay, **ema)


def compile_model(model: keras.Model, cfg: TrainConfig, learning_rate) -> None:
    """One-hot labels with categorical cross-entropy (CutMix mixes one-hot rows)."""
    model.compile(
        optimizer=make_optimizer(cfg, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
