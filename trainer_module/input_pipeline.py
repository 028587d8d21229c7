"""tf.data input pipelines that read the raw examples and apply the Transform graph on the fly.

Decoding runs in parallel batches through the Transform graph, augmentation per image after
unbatching so each image gets its own crop.
Pixels travel as uint8 between the Transform graph and the model (the graph outputs whole numbers
in [0, 255], so the cast is lossless): crops, flips and CutMix move 4x fewer bytes than float32.
Evaluation batches go through model_input.inference_input, the function both serving signatures
call; training batches end with the same cast to the model's dtype.
When the decoded images fit the memory budget (TrainConfig.decoded_cache_gb), they are decoded
once and kept in memory, and every epoch shuffles all of them; later epochs only crop, flip and
mix. Otherwise every epoch decodes again and shuffling happens on serialized records (a few KB
each) in a bounded buffer.
"""
from typing import List, Optional, Sequence

import tensorflow as tf

from trainer_module import augmentation, model_input, names
from trainer_module.train_config import TrainConfig

# Records decoded per Transform-graph call: amortises the call overhead without holding many
# decoded images (32 x 256 x 256 x 3 float32 = 25 MB).
_DECODE_BATCH = 32


def list_files(file_patterns: Sequence[str]) -> List[str]:
    """Expands the Trainer's file patterns; an empty split is an error, not an empty dataset."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {list(file_patterns)}")
    return files


def count_examples(file_patterns: Sequence[str]) -> int:
    """Number of records (the steps per epoch come from the real count)."""
    records = tf.data.TFRecordDataset(list_files(file_patterns), compression_type="GZIP")
    return int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def decoded_cache_bytes(n_examples: int, cfg: TrainConfig) -> int:
    """Memory the decoded uint8 images of n_examples take (resize_size^2 * 3 bytes each)."""
    return n_examples * cfg.resize_size * cfg.resize_size * 3


def cache_fits(n_examples: int, cfg: TrainConfig) -> bool:
    """Whether n_examples decoded images fit cfg.decoded_cache_gb (0 turns the cache off)."""
    return decoded_cache_bytes(n_examples, cfg) <= cfg.decoded_cache_gb * 1e9


def _records(files: List[str], training: bool, cfg: TrainConfig) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                       cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not training)
    if training:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    return ds


def make_dataset(file_patterns: Sequence[str], tft_layer, raw_feature_spec, cfg: TrainConfig,
                 training: bool, batch_size: Optional[int] = None,
                 cached_examples: Optional[int] = None, side: Optional[tf.Variable] = None) -> tf.data.Dataset:
    """(images [B, S, S, 3] float32 in [0, 255], one-hot labels [B, N]) batches.

    batch_size: the global batch (default cfg.batch_size).
    training=True: endless, shuffled, random crops (and flips), CutMix, whole batches only.
    training=False: one pass in file order, centre crops (cfg.served_image_size), last batch kept.
    cached_examples: the number of examples, to keep their decoded images in memory after the
      first pass (check cache_fits first); training then shuffles all of them every epoch.
    side: training only, with progressive resizing: training_side_variable's variable.
    """
    spec = {k: raw_feature_spec[k] for k in (names.IMAGE_KEY, names.LABEL_KEY)}

    def transform(serialized):
        transformed = tft_layer(tf.io.parse_example(serialized, spec))
        # TF Transform outputs only float32/int64/string; the values are already 8-bit.
        return {names.TRANSFORMED_IMAGE_KEY: tf.cast(transformed[names.TRANSFORMED_IMAGE_KEY], tf.uint8),
                names.TRANSFORMED_ONE_HOT_KEY: transformed[names.TRANSFORMED_ONE_HOT_KEY]}

    files = list_files(file_patterns)
    if cached_examples:
        ds = tf.data.TFRecordDataset(files, compression_type="GZIP")  # file order: shuffled after the cache
        ds = ds.batch(_DECODE_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
        if training:
            # The buffer holds references to the cached tensors, so a full shuffle costs no memory.
            ds = ds.shuffle(cached_examples, seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    else:
        ds = _records(files, training, cfg)
        ds = ds.batch(_DECODE_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE,
                                         deterministic=not training).unbatch()
    batch_size = batch_size or cfg.batch_size
    if training:
        return training_batches(ds, cfg, batch_size, side)
    return eval_batches(ds, cfg, batch_size)


def training_side_variable(cfg: TrainConfig) -> Optional[tf.Variable]:
    """With progressive resizing, the variable holding the side training batches are scaled to
    (trainer.ProgressiveResizing sets it at each epoch's start); None without."""
    if not cfg.progressive_start_size:
        return None
    return tf.Variable(cfg.training_side(0), trainable=False, dtype=tf.int32, name="training_side")


def training_batches(examples: tf.data.Dataset, cfg: TrainConfig, batch_size: int,
                     side: Optional[tf.Variable] = None) -> tf.data.Dataset:
    """Decoded examples {image uint8 [R, R, 3], one-hot} (already shuffled and repeated) -> the
    training batches: random (or random-resized) crops, flips and colour jitter per image, then
    CutMix and MixUp per batch, then (progressive resizing) the batch scaled to `side`."""
    def train_view(example):
        image = example[names.TRANSFORMED_IMAGE_KEY]
        if cfg.crop_area_min:
            image = augmentation.random_resized_crop(image, cfg.image_size, cfg.crop_area_min)
        else:
            image = augmentation.random_crop(image, cfg.image_size)
        if cfg.random_flip:
            image = augmentation.random_flip(image)
        if cfg.color_jitter:
            image = augmentation.color_jitter(image, cfg.color_jitter)
        # 8-bit values either way (lossless): CutMix moves uint8.
        return tf.cast(image, tf.uint8), example[names.TRANSFORMED_ONE_HOT_KEY]

    ds = examples.map(train_view, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True)
    if cfg.cutmix_probability > 0:
        ds = ds.map(lambda x, y: augmentation.cutmix(x, y, cfg.cutmix_probability, cfg.cutmix_alpha),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if cfg.mixup_probability > 0:
        ds = ds.map(lambda x, y: augmentation.mixup(x, y, cfg.mixup_probability, cfg.mixup_alpha),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if side is not None:  # read per batch: a new epoch's side applies from the batches made after it is set
        ds = ds.map(lambda x, y: (augmentation.resize_batch(x, side.read_value()), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (model_input.to_model_dtype(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(examples: tf.data.Dataset, cfg: TrainConfig, batch_size: int) -> tf.data.Dataset:
    """Decoded examples {image uint8 [R, R, 3], one-hot} -> (centre crops of cfg.served_image_size,
    one-hot) batches, last kept."""
    def eval_view(batch):
        return (model_input.inference_input(batch[names.TRANSFORMED_IMAGE_KEY], cfg.served_image_size),
                batch[names.TRANSFORMED_ONE_HOT_KEY])

    return examples.batch(batch_size).map(eval_view, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
