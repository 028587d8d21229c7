"""A proposed leaner Trainer data path, measured by bench/trainer_input.py --proposal (not used by the pipeline).

Three changes, each with the same semantics as the current code (the bench's self-check compares
them), found by profiling the CPU cost per image of trainer_module.data.make_dataset on 2 cores:

  1. preprocessing.decode_and_resize: the antialiasing filter only when the image is downscaled.
     `tf.image.resize(..., antialias=True)` runs the generic ScaleAndTranslate kernel, about 3x
     slower than plain bilinear; when upscaling (intel-dev: 150 px -> 256) antialiasing does
     nothing (max difference 2e-3 on a 0..255 scale). Larger images keep the filter.
  2. augmentation.cutmix: paste each box by slicing (concat of slices per image) instead of
     [B, H, W] boolean masks and a broadcasting tf.where over the whole batch (SelectV2 with
     broadcasting is slow on CPU). Same boxes, same random draws, same pixels and labels.
  3. uint8 pixels through the rest of the input pipeline: make_dataset rounds the Transform
     graph's float32 output to uint8 in the same map (TF Transform only allows float32, int64 and
     string outputs, so the graph itself cannot return uint8); crop, flip and CutMix then move 4x
     fewer bytes, and the batch is cast back to float32 last. Rounding changes training pixels by
     <= 0.5 on the 0..255 scale (serving keeps the unrounded values).

And one opt-in change that trades memory for CPU:

  4. cache_decoded=True: keep the decoded, resized uint8 images in memory after the first epoch
     (tf.data cache after the Transform graph), shuffle decoded images (buffer min(shuffle_buffer,
     examples)) instead of serialized records; later epochs only crop, flip and mix. Costs
     resize^2 * 3 bytes per training example (196 KB at 256: 0.6 GB for intel-dev's 3,000, 3.3 GB
     for 17,000) plus the shuffle buffer (up to 0.4 GB at 2,048), so it needs a memory ceiling.

`make_dataset(..., uint8=False)` applies 1 and 2 only.
"""
import tensorflow as tf

from trainer_module import augmentation, features
from trainer_module.config import TrainConfig
from trainer_module import data as data_lib


def decode_and_resize(image_bytes: tf.Tensor, size: int) -> tf.Tensor:
    """Change 1: as preprocessing.decode_and_resize, antialias only when downscaling."""
    def one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image = tf.cast(image, tf.float32)
        shape = tf.shape(image)
        downscale = tf.logical_or(shape[0] > size, shape[1] > size)
        resized = tf.cond(downscale, lambda: tf.image.resize(image, [size, size], antialias=True),
                          lambda: tf.image.resize(image, [size, size]))
        return resized

    images = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
    return tf.clip_by_value(images, 0.0, 255.0)


def preprocessing_fn(inputs, custom_config):
    """As trainer_module.preprocessing.preprocessing_fn with the lean decode_and_resize."""
    num_classes = len(custom_config["class_names"])
    outputs = {features.TRANSFORMED_IMAGE_KEY: decode_and_resize(
        tf.reshape(inputs[features.IMAGE_KEY], [-1]), custom_config["resize_size"])}
    if features.LABEL_KEY in inputs:
        label = tf.reshape(inputs[features.LABEL_KEY], [-1])
        outputs[features.TRANSFORMED_LABEL_KEY] = label
        outputs[features.TRANSFORMED_ONE_HOT_KEY] = tf.one_hot(label, num_classes, dtype=tf.float32)
    return outputs


def cutmix(images: tf.Tensor, labels: tf.Tensor, probability: float = 0.5, alpha: float = 1.0):
    """Change 2: augmentation.cutmix by slicing; same boxes, partners, pixels and labels."""
    shape = tf.shape(images)
    height, width = images.shape[1], images.shape[2]
    y1, y2, x1, x2 = augmentation.cutmix_boxes(shape[0], height, width, probability, alpha)
    partner = tf.random.shuffle(tf.range(shape[0]))
    others = tf.gather(images, partner)

    def paste(args):
        own, other, top, bottom, left, right = args
        middle = tf.concat([own[top:bottom, :left], other[top:bottom, left:right], own[top:bottom, right:]], axis=1)
        return tf.concat([own[:top], middle, own[bottom:]], axis=0)

    mixed = tf.map_fn(paste, (images, others, y1, y2, x1, x2),
                      fn_output_signature=tf.TensorSpec(images.shape[1:], images.dtype))
    mixed.set_shape(images.shape)
    area = tf.cast((y2 - y1) * (x2 - x1), labels.dtype)[:, tf.newaxis] / (height * width)
    return mixed, (1.0 - area) * labels + area * tf.gather(labels, partner)


def make_dataset(file_patterns, tft_layer, raw_feature_spec, cfg: TrainConfig, training: bool,
                 batch_size=None, uint8: bool = True, cache_decoded: bool = False) -> tf.data.Dataset:
    """trainer_module.data.make_dataset with the sliced CutMix (change 2), with uint8=True uint8
    pixels between the Transform graph and a final float32 cast (change 3), with cache_decoded=True
    the decoded images cached in memory (change 4, training only, needs uint8)."""
    spec = {k: raw_feature_spec[k] for k in (features.IMAGE_KEY, features.LABEL_KEY)}

    def transform(serialized):
        transformed = tft_layer(tf.io.parse_example(serialized, spec))
        image = transformed[features.TRANSFORMED_IMAGE_KEY]
        if uint8:
            image = tf.cast(tf.round(image), tf.uint8)  # the graph clips to [0, 255]
        return {features.TRANSFORMED_IMAGE_KEY: image,
                features.TRANSFORMED_ONE_HOT_KEY: transformed[features.TRANSFORMED_ONE_HOT_KEY]}

    def train_view(example):
        image = augmentation.random_crop(example[features.TRANSFORMED_IMAGE_KEY], cfg.image_size)
        if cfg.random_flip:
            image = augmentation.random_flip(image)
        return image, example[features.TRANSFORMED_ONE_HOT_KEY]

    def eval_view(example):
        return (augmentation.center_crop(example[features.TRANSFORMED_IMAGE_KEY], cfg.image_size),
                example[features.TRANSFORMED_ONE_HOT_KEY])

    files = data_lib.list_files(file_patterns)
    if training and cache_decoded:
        if not uint8:
            raise ValueError("cache_decoded needs uint8 (float32 images are 4x bigger)")
        ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
        ds = ds.batch(data_lib._DECODE_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        ds = ds.cache().shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    else:
        ds = data_lib._records(files, training, cfg)
        ds = ds.batch(data_lib._DECODE_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE,
                                                  deterministic=not training).unbatch()
    ds = ds.map(train_view if training else eval_view, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size or cfg.batch_size, drop_remainder=training)
    if training and cfg.cutmix_probability > 0:
        ds = ds.map(lambda x, y: cutmix(x, y, cfg.cutmix_probability, cfg.cutmix_alpha),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if uint8:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def self_check() -> None:
    """Raises unless the lean pieces match the current code (run by trainer_input.py --proposal)."""
    from trainer_module import preprocessing
    images = tf.random.uniform([6, 40, 40, 3], 0, 255)
    labels = tf.one_hot(tf.range(6) % 3, 3)
    tf.random.set_seed(7)
    want = augmentation.cutmix(images, labels, 0.5, 1.0)
    tf.random.set_seed(7)
    got = cutmix(images, labels, 0.5, 1.0)
    tf.debugging.assert_equal(want[0], got[0], message="lean CutMix pixels differ")
    tf.debugging.assert_near(want[1], got[1], atol=1e-6, message="lean CutMix labels differ")
    small = [tf.io.encode_jpeg(tf.cast(tf.random.uniform([30, 20, 3], 0, 255), tf.uint8)).numpy()]
    big = [tf.io.encode_jpeg(tf.cast(tf.random.uniform([90, 70, 3], 0, 255), tf.uint8)).numpy()]
    for data in (small, big):  # upscaled (filter skipped) and downscaled (filter kept)
        ref = preprocessing.decode_and_resize(tf.constant(data), 48)
        tf.debugging.assert_near(ref, decode_and_resize(tf.constant(data), 48), atol=0.01,
                                 message="lean resize differs")
