"""Unit tests of the Trainer module: config, model input, augmentation, CutMix, schedules, model,
optimizer, preprocessing."""
import hashlib
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import image_factory
from trainer_module import augmentation, model as model_lib, model_input, names, preprocessing, schedules
from trainer_module.train_config import ConfigError, TrainConfig, transform_config

CLASSES = ("a", "b", "c")


def cfg(**overrides):
    return TrainConfig(class_names=CLASSES, **overrides)


# --- config validation -------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    ({"schedule": "exponential"}, "schedule='exponential': must be one of"),
    ({"image_size": 256, "resize_size": 224}, "resize_size=224: must be >= image_size"),
    ({"learning_rate": -0.1}, "learning_rate=-0.1: must be > 0"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
    ({"cutmix_probability": 1.5}, "cutmix_probability=1.5"),
    ({"cutmix_alpha": 0.0}, "cutmix_alpha=0.0"),
    ({"epochs": 2, "frozen_backbone_epochs": 2}, "frozen_backbone_epochs=2"),
    ({"weights": "weights.bin"}, "weights='weights.bin'"),
    ({"weights_md5": "abc"}, "weights_md5='abc'"),
    ({"precision": "float8"}, "precision='float8'"),
    ({"step_factor": 0.0}, "step_factor=0.0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"decoded_cache_gb": -1.0}, "decoded_cache_gb=-1.0: must be >= 0"),
    ({"image_size": 128, "resize_size": 144, "test_image_size": 160}, "test_image_size=160: must be 0"),
    ({"test_image_size": 16}, "test_image_size=16: must be 0"),
    ({"crop_area_min": 0.01}, "crop_area_min=0.01: must be 0"),
    ({"crop_area_min": 1.5}, "crop_area_min=1.5"),
    ({"color_jitter": 1.0}, "color_jitter=1.0: must be in"),
    ({"image_size": 128, "resize_size": 144, "progressive_start_size": 144}, "progressive_start_size=144"),
    ({"progressive_start_size": 16}, "progressive_start_size=16: must be 0"),
    ({"progressive_end_fraction": 0.0}, "progressive_end_fraction=0.0: must be in (0, 1]"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        cfg(**overrides)


def test_config_rejects_unknown_keys_and_bad_classes():
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['learning_rat'\]"):
        TrainConfig.from_dict({"class_names": CLASSES, "learning_rat": 0.1})
    with pytest.raises(ConfigError, match="at least 2 classes"):
        TrainConfig(class_names=("a",))
    with pytest.raises(ConfigError, match="duplicates"):
        TrainConfig(class_names=("a", "a"))


def test_config_round_trips_through_json():
    import json
    original = cfg(schedule="step", epochs=7)
    assert TrainConfig.from_dict(json.loads(original.to_json())) == original


def test_defaults_are_the_notebook_recipe():
    c = cfg()
    assert (c.image_size, c.resize_size, c.batch_size, c.learning_rate) == (224, 256, 64, 0.01)
    assert (c.optimizer, c.cutmix_probability, c.step_every_epochs) == ("sgd", 0.5, 3)


def test_the_served_side_is_the_test_image_size_else_the_training_crop():
    assert cfg(image_size=128, resize_size=144).served_image_size == 128
    assert cfg(image_size=128, resize_size=144, test_image_size=144).served_image_size == 144


def test_progressive_resizing_grows_in_16_px_steps_and_ends_at_the_crop_side():
    plain = cfg(image_size=128, resize_size=144, epochs=40)
    assert {plain.training_side(e) for e in range(40)} == {128}
    c = cfg(image_size=128, resize_size=144, epochs=40, progressive_start_size=96)  # ramp over half the epochs
    assert [c.training_side(e) for e in range(40)] == [96] * 10 + [112] * 10 + [128] * 20
    odd = cfg(image_size=128, resize_size=144, epochs=10, progressive_start_size=100, progressive_end_fraction=1.0)
    sides = [odd.training_side(e) for e in range(10)]
    assert sides[0] == 100 and sides[-1] == 128  # the last epoch trains at image_size
    assert all((s - 100) % 16 == 0 for s in sides[:-1]) and sides == sorted(sides)
    assert cfg(image_size=64, resize_size=64, epochs=1, progressive_start_size=32).training_side(0) == 64


# --- model input and crops ---------------------------------------------------------------------

def test_random_crop_is_a_window_of_the_image_and_varies():
    tf.random.set_seed(1)
    image = tf.reshape(tf.range(10 * 12 * 3, dtype=tf.float32), [10, 12, 3])
    crops = [augmentation.random_crop(image, 8).numpy() for _ in range(30)]
    assert all(c.shape == (8, 8, 3) for c in crops)
    full = image.numpy()
    origins = set()
    for c in crops:
        top, left = np.argwhere(full[..., 0] == c[0, 0, 0])[0]
        np.testing.assert_array_equal(c, full[top:top + 8, left:left + 8])
        origins.add((top, left))
    assert len(origins) >= 6  # 3 x 5 = 15 possible windows


def test_random_resized_crop_rescales_a_window_to_the_crop_side():
    tf.random.set_seed(2)
    image = tf.constant(np.random.default_rng(0).integers(0, 256, [40, 40, 3]), tf.uint8)
    crops = [augmentation.random_resized_crop(image, 24, 0.35).numpy() for _ in range(20)]
    assert all(c.shape == (24, 24, 3) and c.dtype == np.float32 for c in crops)
    assert all(np.array_equal(c, np.round(c)) and c.min() >= 0 and c.max() <= 255 for c in crops)
    assert len({c.tobytes() for c in crops}) == 20  # windows of different places and sizes
    # Area share 1 and a square image: the window is the whole image, resized.
    whole = augmentation.random_resized_crop(image, 24, 1.0).numpy()
    np.testing.assert_array_equal(whole, np.round(tf.image.resize(tf.cast(image, tf.float32), [24, 24]).numpy()))


def test_color_jitter_scales_brightness_contrast_and_saturation():
    tf.random.set_seed(3)
    image = tf.constant(np.random.default_rng(1).integers(30, 220, [16, 16, 3]), tf.uint8)
    same = augmentation.color_jitter(image, 0.0).numpy()
    np.testing.assert_allclose(same, image.numpy(), atol=1.0)  # factors of exactly 1 (up to rounding)
    jittered = [augmentation.color_jitter(image, 0.4).numpy() for _ in range(10)]
    assert all(j.dtype == np.float32 and np.array_equal(j, np.round(j)) for j in jittered)
    assert all(j.min() >= 0 and j.max() <= 255 for j in jittered)
    means = [j.mean() for j in jittered]
    assert np.ptp(means) > 10  # brightness moves
    # Saturation on 0-255 values is the same as on 0-1 values, scaled (the op is scale-free).
    pixels = tf.cast(image, tf.float32)
    np.testing.assert_allclose(tf.image.adjust_saturation(pixels, 1.3).numpy(),
                               255 * tf.image.adjust_saturation(pixels / 255, 1.3).numpy(), atol=1e-3)


def test_training_batches_follow_the_progressive_side_and_the_eval_view_the_test_size():
    from trainer_module import input_pipeline
    c = cfg(image_size=32, resize_size=40, test_image_size=40, batch_size=4, epochs=4, progressive_start_size=32,
            crop_area_min=0.5, color_jitter=0.2)
    examples = tf.data.Dataset.from_tensor_slices({
        names.TRANSFORMED_IMAGE_KEY: np.random.default_rng(2).integers(0, 256, [8, 40, 40, 3]).astype(np.uint8),
        names.TRANSFORMED_ONE_HOT_KEY: np.eye(3, dtype=np.float32)[np.arange(8) % 3]})
    side = tf.Variable(32)
    batches = iter(input_pipeline.training_batches(examples.repeat(), c, 4, side))
    assert next(batches)[0].shape == (4, 32, 32, 3)
    side.assign(24)
    shapes = {tuple(next(batches)[0].shape) for _ in range(8)}  # batches prefetched before the change keep 32
    assert (4, 24, 24, 3) in shapes and shapes <= {(4, 24, 24, 3), (4, 32, 32, 3)}
    images, _ = next(iter(input_pipeline.eval_batches(examples, c, 8)))
    assert images.shape == (8, 40, 40, 3)  # evaluation: the centre crop of test_image_size, the whole image here
    assert input_pipeline.training_side_variable(cfg()) is None
    assert int(input_pipeline.training_side_variable(c).numpy()) == 32


def test_progressive_resizing_callback_sets_each_epochs_side():
    from trainer_module import trainer
    c = cfg(image_size=64, resize_size=64, epochs=6, progressive_start_size=32)
    side = tf.Variable(0)
    callback = trainer.ProgressiveResizing(side, c)
    seen = []
    for epoch in range(6):
        callback.on_epoch_begin(epoch)
        seen.append(int(side.numpy()))
    assert seen == [c.training_side(e) for e in range(6)] == [32, 32, 48, 64, 64, 64]


def test_center_crop_takes_the_middle():
    images = tf.reshape(tf.range(2 * 9 * 9, dtype=tf.float32), [2, 9, 9, 1])
    out = model_input.center_crop(images, 5)
    assert out.shape == (2, 5, 5, 1)
    np.testing.assert_array_equal(out.numpy(), images.numpy()[:, 2:7, 2:7])
    single = model_input.center_crop(tf.reshape(tf.range(6 * 8 * 3), [6, 8, 3]), 4)  # one image, H != W
    np.testing.assert_array_equal(single.numpy(), np.arange(6 * 8 * 3).reshape(6, 8, 3)[1:5, 2:6])


@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_inference_input_is_the_float32_centre_crop(dtype):
    # The eval pipeline carries uint8, the serving signatures the Transform graph's float32.
    pixels = np.random.default_rng(0).integers(0, 256, [3, 10, 12, 3])
    out = model_input.inference_input(tf.constant(pixels, dtype), 6)
    assert out.dtype == tf.float32 and out.shape == (3, 6, 6, 3)
    np.testing.assert_array_equal(out.numpy(), pixels[:, 2:8, 3:9].astype(np.float32))


def test_serving_does_not_depend_on_the_training_augmentations():
    from trainer_module import signatures
    assert "augmentation" not in vars(signatures)


# --- CutMix ------------------------------------------------------------------------------------

def _box_areas(batch, size, probability):
    y1, y2, x1, x2 = (t.numpy() for t in augmentation.cutmix_boxes(batch, size, size, probability, 1.0))
    assert (y2 >= y1).all() and (x2 >= x1).all() and y2.max() <= size and x2.max() <= size
    return (y2 - y1) * (x2 - x1) / (size * size)


def test_cutmix_applies_to_about_the_configured_share():
    tf.random.set_seed(0)
    share = (_box_areas(4000, 64, 0.5) > 0).mean()
    # Binomial(4000, ~0.5): sd 0.008; a few boxes are empty (under one pixel) or clipped.
    assert 0.46 < share < 0.54
    assert _box_areas(500, 32, 0.0).sum() == 0
    assert (_box_areas(500, 32, 1.0) > 0).mean() > 0.97


def test_cutmix_box_area_follows_the_beta_draw():
    tf.random.set_seed(3)
    areas = _box_areas(3000, 64, 1.0)
    # Unclipped, E[area] = E[1 - lambda] = 0.5 for Beta(1, 1); clipping at borders shrinks it.
    assert 0.25 < areas.mean() < 0.5
    assert areas.max() > 0.8 and areas.min() < 0.05


def test_paste_box_writes_exactly_the_box():
    own, other = tf.zeros([6, 7, 3], tf.uint8), tf.ones([6, 7, 3], tf.uint8)
    out = augmentation.paste_box(own, other, 1, 4, 2, 7).numpy()
    want = np.zeros([6, 7, 3], np.uint8)
    want[1:4, 2:7] = 1
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(augmentation.paste_box(own, other, 3, 3, 0, 7).numpy(), 0)  # empty box


@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_cutmix_labels_equal_the_pasted_pixel_fractions(dtype):
    tf.random.set_seed(7)
    n, size = 16, 24
    images = tf.cast(tf.reshape(tf.repeat(tf.range(n), size * size * 3), [n, size, size, 3]), dtype)
    labels = tf.one_hot(tf.range(n), n)
    mixed, mixed_labels = augmentation.cutmix(images, labels, probability=1.0, alpha=1.0)
    mixed, mixed_labels = mixed.numpy()[..., 0], mixed_labels.numpy()
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
    for i in range(n):
        fractions = np.array([(mixed[i] == c).mean() for c in range(n)])
        np.testing.assert_allclose(mixed_labels[i], fractions, atol=1e-6)
    assert (mixed_labels.max(axis=1) < 1.0).sum() >= n // 2  # most rows really mixed


def test_mixup_blends_pixels_and_labels_with_the_same_minority_weight():
    tf.random.set_seed(3)
    n, size = 64, 8
    images = tf.cast(tf.reshape(tf.repeat(tf.range(n) * 3, size * size * 3), [n, size, size, 3]), tf.uint8)
    labels = tf.one_hot(tf.range(n), n)
    mixed, mixed_labels = augmentation.mixup(images, labels, probability=0.5, alpha=0.2)
    mixed, mixed_labels = mixed.numpy(), mixed_labels.numpy()
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
    for i in range(n):
        own = mixed_labels[i, i]
        assert own >= 0.5 - 1e-6  # the image stays the majority
        partner = [j for j in np.flatnonzero(mixed_labels[i]) if j != i]
        expected = own * 3 * i + (sum(mixed_labels[i, j] * 3 * j for j in partner))
        np.testing.assert_allclose(mixed[i], expected, rtol=1e-5)  # pixels mixed by the label weights
    blended = int((mixed_labels.max(axis=1) < 1.0).sum())
    assert 16 <= blended <= 48  # about half of 64 at probability 0.5


def test_mixup_at_probability_zero_changes_nothing():
    images = tf.random.uniform([8, 4, 4, 3], 0, 255)
    labels = tf.one_hot(tf.range(8), 8)
    mixed, mixed_labels = augmentation.mixup(images, labels, probability=0.0)
    np.testing.assert_allclose(mixed.numpy(), images.numpy())
    np.testing.assert_allclose(mixed_labels.numpy(), labels.numpy())


# --- schedules ---------------------------------------------------------------------------------

def test_warmup_cosine_values():
    c = cfg(schedule="warmup_cosine", epochs=5, learning_rate=0.01, warmup_epochs=1.0,
            cosine_final_fraction=0.1)
    s = schedules.make_schedule(c, steps_per_epoch=10)
    lr = lambda step: schedules.learning_rate_at(s, step)  # noqa: E731
    assert lr(0) == pytest.approx(0.0)
    assert lr(5) == pytest.approx(0.005)  # half-way through the linear warmup
    assert lr(10) == pytest.approx(0.01)  # warmup end = peak
    decay_steps = 40
    for step in (20, 30, 45):
        t = (step - 10) / decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * t))
        assert lr(step) == pytest.approx(0.01 * ((1 - 0.1) * cosine + 0.1), rel=1e-5)
    assert lr(50) == pytest.approx(0.001)  # end = final fraction of the peak


def test_step_decay_values():
    c = cfg(schedule="step", epochs=9, learning_rate=0.01, step_every_epochs=3, step_factor=0.5)
    s = schedules.make_schedule(c, steps_per_epoch=10)
    values = {step: schedules.learning_rate_at(s, step) for step in (0, 29, 30, 59, 60, 89)}
    assert values == pytest.approx({0: 0.01, 29: 0.01, 30: 0.005, 59: 0.005, 60: 0.0025, 89: 0.0025})


def test_constant_schedule_and_phase_override():
    assert schedules.make_schedule(cfg(), 10) == 0.01
    s = schedules.make_schedule(cfg(schedule="warmup_cosine"), 10, epochs=2, learning_rate=0.001)
    assert schedules.learning_rate_at(s, 10) == pytest.approx(0.001)


def test_schedule_plot_is_a_700_by_350_png_and_leaves_pyplot_alone(tmp_path):
    import matplotlib
    backend = matplotlib.get_backend()
    s = schedules.make_schedule(cfg(schedule="warmup_cosine", epochs=3), 7)
    path = schedules.plot_schedule(s, 21, 7, str(tmp_path / "lr.png"))
    image = tf.io.decode_png(tf.io.read_file(path))
    assert image.shape == (350, 700, 4)  # figsize 7 x 3.5 inches at 100 dpi
    assert len(np.unique(image.numpy())) > 5  # something was drawn
    assert matplotlib.get_backend() == backend  # no global backend switched


# --- model -------------------------------------------------------------------------------------

def test_model_outputs_probabilities_and_fixes_batchnorm_momentum():
    c = cfg(image_size=32, resize_size=32)
    model = model_lib.build_model(c)
    out = model(tf.random.uniform([2, 32, 32, 3], 0, 255)).numpy()
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    momenta = {l.momentum for l in model_lib.backbone_of(model).submodules
               if isinstance(l, keras.layers.BatchNormalization)}
    assert momenta == {0.9}


def test_one_network_takes_the_training_crops_and_the_larger_served_crops():
    c = cfg(image_size=32, resize_size=48, test_image_size=48, test_time_flip=True)
    model = model_lib.build_model(c)
    assert model(tf.random.uniform([2, 32, 32, 3], 0, 255)).shape == (2, 3)
    served = model_lib.inference_model(model, c)
    images = tf.random.uniform([2, 48, 48, 3], 0, 255)
    # softmax of the views' mean logits: the normalised geometric mean of their probabilities.
    geometric = np.sqrt(model(images).numpy().astype(np.float64) * model(images[:, :, ::-1]).numpy())
    np.testing.assert_allclose(served(images).numpy(), geometric / geometric.sum(axis=1, keepdims=True), atol=1e-5)


def test_flip_averaging_averages_both_views_logits_and_is_mirror_invariant():
    c = cfg(image_size=32, resize_size=32, test_time_flip=True)
    model = model_lib.build_model(c)
    model_lib.recalibrate_batchnorm(  # distinct scores per image (a fresh network's are all alike)
        model, tf.data.Dataset.from_tensors((tf.random.uniform([8, 32, 32, 3], 0, 255), 0)), 1)
    averaged = model_lib.inference_model(model, c)
    assert model_lib.inference_model(model, cfg(image_size=32, resize_size=32)) is model
    images = tf.random.uniform([3, 32, 32, 3], 0, 255)
    mirrored = images[:, :, ::-1, :]
    # softmax of the mean logits: the normalised geometric mean of the views' probabilities.
    geometric = np.sqrt(model(images).numpy().astype(np.float64) * model(mirrored).numpy())
    expected = geometric / geometric.sum(axis=1, keepdims=True)
    assert np.abs(expected - 1 / 3).max() > 0.05  # the views' scores differ from uniform
    np.testing.assert_allclose(averaged(images).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(averaged(mirrored).numpy(), averaged(images).numpy(), atol=1e-5)


def test_ema_weights_replace_the_trained_ones_when_fit_ends():
    keras.utils.set_random_seed(0)
    inputs = keras.Input([2])
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=model_lib.make_optimizer(cfg(ema_momentum=0.9), 0.1), loss="mse")
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == pytest.approx(0.9)
    x, y = np.ones([8, 2], np.float32), np.full([8, 1], 4.0, np.float32)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    ema_kernel = model.get_weights()[0]
    plain = keras.Model(inputs2 := keras.Input([2]), keras.layers.Dense(1, use_bias=False,
                                                                        kernel_initializer="zeros")(inputs2))
    plain.compile(optimizer=model_lib.make_optimizer(cfg(), 0.1), loss="mse")
    plain.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert not model_lib.make_optimizer(cfg(), 0.1).use_ema
    # The average lags the weights it follows: still far from the target after three steps.
    assert 0 < float(ema_kernel.sum()) < float(plain.get_weights()[0].sum())


def test_local_weights_file_is_checked_against_its_md5(tmp_path):
    c = cfg(image_size=32, resize_size=32)
    source = model_lib.build_backbone(c)
    path = str(tmp_path / "backbone.h5")
    source.save_weights(path)
    md5 = hashlib.md5(open(path, "rb").read()).hexdigest()
    loaded = model_lib.build_backbone(cfg(image_size=32, resize_size=32, weights=path, weights_md5=md5))
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(model_lib.WeightsChecksumError, match="expected d3e8ec802a04aa4fc771ee12a9a9b836"):
        model_lib.build_backbone(cfg(image_size=32, resize_size=32, weights=path))  # published md5
    with pytest.raises(ConfigError, match="weights file not found"):
        model_lib.build_backbone(cfg(weights=str(tmp_path / "missing.h5")))


def test_published_md5_lookup():
    assert model_lib.published_weights_md5(cfg(model_variant="large")) == "07fb09a5933dd0c8eaafa16978110389"
    with pytest.raises(ConfigError, match="no published ImageNet weights"):
        model_lib.published_weights_md5(cfg(alpha=0.5))


# --- optimizer ---------------------------------------------------------------------------------

def _one_zero_gradient_step(optimizer):
    """A variable at 1.0 after one step with a zero gradient: below 1 only by weight decay."""
    variable = tf.Variable([1.0])
    optimizer.apply_gradients([(tf.zeros([1]), variable)])
    return float(variable.numpy()[0])


@pytest.mark.parametrize("optimizer,name", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW")])
def test_weight_decay_zero_means_no_decay_for_every_optimizer(optimizer, name):
    plain = model_lib.make_optimizer(cfg(optimizer=optimizer, weight_decay=0.0), 0.1)
    assert type(plain).__name__ == name
    assert not plain.weight_decay  # None, or AdamW's 0.0 (it requires a number)
    assert _one_zero_gradient_step(plain) == 1.0
    decayed = model_lib.make_optimizer(cfg(optimizer=optimizer, weight_decay=0.01), 0.1)
    assert decayed.weight_decay == pytest.approx(0.01)
    assert _one_zero_gradient_step(decayed) == pytest.approx(1.0 - 0.1 * 0.01)  # decoupled: lr * wd * w


# --- preprocessing -----------------------------------------------------------------------------

def test_decode_image_gives_rgb_uint8_for_every_format():
    for data, shape in ((image_factory.jpeg_bytes(5, 7, mode="L"), (7, 5, 3)),
                        (image_factory.png_bytes(6, 4, mode="RGBA"), (4, 6, 3)),
                        (image_factory.bmp_bytes(3, 2), (2, 3, 3))):
        image = preprocessing.decode_image(tf.constant(data))
        assert image.dtype == tf.uint8 and tuple(image.shape) == shape


def test_ingestion_checks_files_with_the_transform_decoder():
    from components.image_example_gen import image_files
    # By name, not identity: a test process that ran a pipeline also holds TFX's wheel copy.
    decoder = image_files.decode_image
    assert (decoder.__module__, decoder.__qualname__) == ("trainer_module.preprocessing", "decode_image")

def test_decode_and_resize_normalises_formats_and_sizes():
    images = tf.constant([image_factory.jpeg_bytes(150, 150), image_factory.jpeg_bytes(7, 301, mode="L"),
                          image_factory.png_bytes(40, 20, mode="RGBA"), image_factory.bmp_bytes(3, 3)])
    out = preprocessing.decode_and_resize(images, 48).numpy()
    assert out.shape == (4, 48, 48, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    np.testing.assert_allclose(out[1, ..., 0], out[1, ..., 2])  # grayscale -> equal channels


def test_decode_and_resize_outputs_8_bit_values():
    out = preprocessing.decode_and_resize(tf.constant([image_factory.jpeg_bytes(30, 20)]), 48).numpy()
    np.testing.assert_array_equal(out, np.round(out))
    np.testing.assert_array_equal(out.astype(np.uint8).astype(np.float32), out)  # uint8 is lossless


@pytest.mark.parametrize("height,width", [(90, 70), (30, 20), (20, 90)])
def test_resize_antialiases_only_when_shrinking(height, width):
    image = tf.cast(tf.io.decode_jpeg(image_factory.jpeg_bytes(width, height)), tf.float32)
    filtered = tf.image.resize(image, [48, 48], antialias=True).numpy()
    plain = tf.image.resize(image, [48, 48]).numpy()
    got = preprocessing.resize(image, 48).numpy()
    if height > 48 or width > 48:
        np.testing.assert_array_equal(got, filtered)
        assert np.abs(filtered - plain).max() > 1.0  # the filter matters when shrinking
    else:
        np.testing.assert_array_equal(got, plain)
        # Enlarging: the filter changes nothing visible (< 1 of 255), so skipping it is safe.
        assert np.abs(filtered - plain).max() < 1.0


def test_preprocessing_fn_one_hot_and_label_check():
    config = transform_config(CLASSES, 16)
    inputs = {names.IMAGE_KEY: tf.constant([[image_factory.jpeg_bytes(20, 20)]] * 2),
              names.LABEL_KEY: tf.constant([[2], [0]], tf.int64)}
    out = preprocessing.preprocessing_fn(inputs, config)
    np.testing.assert_array_equal(out[names.TRANSFORMED_ONE_HOT_KEY].numpy(), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(out[names.TRANSFORMED_LABEL_KEY].numpy(), [2, 0])
    assert out[names.TRANSFORMED_IMAGE_KEY].shape == (2, 16, 16, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label outside the configured class names"):
        preprocessing.preprocessing_fn({**inputs, names.LABEL_KEY: tf.constant([[3], [0]], tf.int64)}, config)


def test_batchnorm_recalibration_is_the_average_over_batches():
    tf.random.set_seed(0)
    bn = keras.layers.BatchNormalization(momentum=0.999)
    model = keras.Sequential([keras.Input((4,)), bn])
    batches = [tf.random.normal([32, 4], mean=m, stddev=s) for m, s in ((1.0, 1.0), (3.0, 2.0), (5.0, 0.5))]
    dataset = tf.data.Dataset.from_tensor_slices((tf.stack(batches), tf.zeros([3, 32])))
    assert model_lib.recalibrate_batchnorm(model, dataset, batches=10) == 3
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.numpy().mean(0) for b in batches], 0),
                               rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               np.mean([b.numpy().var(0) for b in batches], 0), rtol=1e-3)
    assert bn.momentum == 0.999  # restored


def _bn_model():
    """BN then a fixed classifier: class 1 iff the normalised first feature is positive."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.999),
                              keras.layers.Dense(2, activation="softmax")])
    model.layers[-1].set_weights([np.array([[-5.0, 5.0], [0, 0], [0, 0], [0, 0]]), np.zeros(2)])
    model.compile(loss="categorical_crossentropy")
    return model


def _data(first_feature):
    x = np.zeros([len(first_feature), 4], np.float32)
    x[:, 0] = first_feature
    y = tf.one_hot((x[:, 0] > 50.0).astype(np.int32), 2)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def test_recalibration_is_kept_when_it_lowers_the_train_loss():
    model = _bn_model()  # moving stats at their initial 0 / 1: every input looks "positive"
    result = model_lib.recalibrate_batchnorm_if_better(model, _data([40.0] * 32 + [60.0] * 32), 2)
    assert result["kept"] and result["train_loss_after"] < result["train_loss_before"]
    assert model.layers[0].moving_mean.numpy()[0] == pytest.approx(50.0, abs=0.01)


def test_recalibration_is_rolled_back_when_it_raises_the_train_loss():
    model = _bn_model()
    bn = model.layers[0]
    bn.moving_mean.assign(np.full(4, 50.0, np.float32))  # already the right threshold
    bn.moving_variance.assign(np.full(4, 100.0, np.float32))
    # Mean 61.25: re-estimated statistics would call the images at 55 negative.
    data = _data([40.0] * 16 + [55.0] * 16 + [75.0] * 32)
    result = model_lib.recalibrate_batchnorm_if_better(model, data, 2)
    assert not result["kept"] and result["train_loss_after"] > result["train_loss_before"]
    np.testing.assert_allclose(bn.moving_mean.numpy(), 50.0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 100.0)


def test_autograph_leaves_keras_unconverted_and_converts_the_projects_code():
    from tensorflow.python.autograph.core import config as autograph_config
    from tensorflow.python.autograph.impl import conversion

    from trainer_module import keras_tracing

    keras_tracing.leave_keras_unconverted()  # again (model.py did it on import): still one rule
    rules = [str(r) for r in autograph_config.CONVERSION_RULES]
    assert rules.count("DoNotConvert rule for tf_keras") == 1
    assert conversion.is_allowlisted(keras.layers.Dense.call)
    assert conversion.is_allowlisted(keras.optimizers.SGD.apply_gradients)
    assert not conversion.is_allowlisted(augmentation.cutmix)
    # Traced unconverted, a Keras model computes what it computes eagerly.
    model = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.BatchNormalization()])
    x = tf.random.stateless_normal([4, 5], seed=[1, 2])
    eager = model(x, training=False)
    np.testing.assert_allclose(tf.function(lambda t: model(t, training=False))(x), eager, rtol=1e-6)
