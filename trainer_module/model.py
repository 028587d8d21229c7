"""The classifier: a Keras MobileNetV3 backbone with a small classification head."""
import tf_keras as keras

from trainer_module.config import TrainConfig

_BACKBONES = {"small": keras.applications.MobileNetV3Small, "large": keras.applications.MobileNetV3Large}


def _backbone_weights(cfg: TrainConfig):
    return None if cfg.weights == "none" else cfg.weights


def build_model(cfg: TrainConfig) -> keras.Model:
    """MobileNetV3 (its own rescaling layer takes pixels in [0, 255]) + pooling, dropout, softmax."""
    backbone = _BACKBONES[cfg.model_variant](
        input_shape=(cfg.image_size, cfg.image_size, 3), alpha=cfg.alpha,
        minimalistic=cfg.minimalistic, include_top=False, weights=_backbone_weights(cfg),
        include_preprocessing=True)
    if cfg.weights == "none":
        set_batchnorm_momentum(backbone, cfg.bn_momentum)
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(cfg.num_classes, activation="softmax", dtype="float32",
                                 name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"mobilenetv3_{cfg.model_variant}_classifier")


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Sets every BatchNormalization layer's momentum (read at call time); returns how many."""
    count = 0
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
            count += 1
    return count


def make_optimizer(cfg: TrainConfig, learning_rate) -> keras.optimizers.Optimizer:
    """SGD (with momentum), Adam or AdamW at the given learning rate or schedule."""
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.AdamW(learning_rate)


def compile_model(model: keras.Model, cfg: TrainConfig, learning_rate) -> None:
    """One-hot labels with categorical cross-entropy (CutMix mixes one-hot rows)."""
    model.compile(
        optimizer=make_optimizer(cfg, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
