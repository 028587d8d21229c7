"""Tests of trainer_module.input_pipeline: the Trainer's tf.data path from raw examples to model batches."""
import numpy as np
import pytest
import tensorflow as tf

import image_factory
from components.image_example_gen import records
from components.image_example_gen.records import make_example
from trainer_module import input_pipeline, model_input, preprocessing
from trainer_module.train_config import TrainConfig, transform_config

CLASSES = ("a", "b", "c")
RAW_SPEC = records.raw_feature_spec()


def _write_records(path, n):
    images = [image_factory.jpeg_bytes(20 + 7 * i, 30 + 11 * (i % 3), seed=i) for i in range(n)]
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i, image in enumerate(images):
            writer.write(make_example(image, i % 3, CLASSES[i % 3], f"x/{i}.jpg", 1, 1, "jpeg")
                         .SerializeToString())
    return images


def _tft_layer(cfg):
    # The Transform graph's ops without the SavedModel wrapper (tft_layer takes the parsed features).
    config = transform_config(CLASSES, cfg.resize_size)
    return lambda inputs: preprocessing.preprocessing_fn(inputs, config)


@pytest.fixture()
def records(tmp_path):
    path = tmp_path / "data-00000-of-00001.gz"
    return str(path), _write_records(path, 10)


def test_eval_batches_are_the_serving_input_of_the_graph_output(records):
    path, images = records
    cfg = TrainConfig(class_names=CLASSES, batch_size=4, image_size=32, resize_size=40)
    batches = list(input_pipeline.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, training=False))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]  # one pass, the last batch kept
    got = np.concatenate([b[0].numpy() for b in batches])
    assert got.dtype == np.float32
    # What the serving signatures compute from the Transform graph's float32 output.
    want = model_input.inference_input(preprocessing.decode_and_resize(tf.constant(images), 40), 32).numpy()
    np.testing.assert_array_equal(got, want)  # uint8 transport loses nothing
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(labels.argmax(1), [i % 3 for i in range(10)])


def test_training_batches_are_whole_augmented_and_mixed(records):
    path, _ = records
    cfg = TrainConfig(class_names=CLASSES, batch_size=4, image_size=32, resize_size=40,
                      cutmix_probability=1.0, shuffle_buffer=16)
    tf.random.set_seed(0)
    ds = input_pipeline.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, training=True)
    batches = list(ds.take(8))  # endless: 8 batches of 4 from 10 records
    for images, labels in batches:
        assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
        np.testing.assert_array_equal(images.numpy(), np.round(images.numpy()))
        assert 0.0 <= images.numpy().min() and images.numpy().max() <= 255.0
        np.testing.assert_allclose(labels.numpy().sum(1), 1.0, atol=1e-6)
    soft = np.concatenate([labels.numpy() for _, labels in batches]).max(1) < 1.0
    assert soft.mean() > 0.5  # CutMix at probability 1 mixes most rows


def test_cached_eval_batches_equal_uncached_on_every_pass(records):
    path, _ = records
    cfg = TrainConfig(class_names=CLASSES, batch_size=4, image_size=32, resize_size=40)
    uncached = input_pipeline.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, False)
    plain = np.concatenate([x.numpy() for x, _ in uncached])
    cached = input_pipeline.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, False, cached_examples=10)
    for _ in range(2):  # the first pass fills the cache, the second reads it
        np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in cached]), plain)


def test_cached_training_shuffles_every_example_each_epoch(records):
    path, images = records
    cfg = TrainConfig(class_names=CLASSES, batch_size=5, image_size=40, resize_size=40, random_flip=False,
                      cutmix_probability=0.0)
    want = preprocessing.decode_and_resize(tf.constant(images), 40).numpy()
    tf.random.set_seed(1)
    ds = input_pipeline.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, True, cached_examples=10)
    seen = np.concatenate([x.numpy() for x, _ in ds.take(6)])  # 3 epochs of 10
    order = [int(np.flatnonzero((want == image).all(axis=(1, 2, 3)))[0]) for image in seen]
    epochs = [order[i:i + 10] for i in (0, 10, 20)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch: every example once
    assert len({tuple(e) for e in epochs}) == 3  # reshuffled each epoch


def test_cache_budget():
    cfg = TrainConfig(class_names=CLASSES, resize_size=256, decoded_cache_gb=1.0)
    assert input_pipeline.decoded_cache_bytes(1000, cfg) == 1000 * 256 * 256 * 3
    # 0.98 GB vs 1.18 GB
    assert input_pipeline.cache_fits(5000, cfg) and not input_pipeline.cache_fits(6000, cfg)
    assert not input_pipeline.cache_fits(1, TrainConfig(class_names=CLASSES, decoded_cache_gb=0.0))


def test_missing_files_are_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        input_pipeline.list_files([str(tmp_path / "*.gz")])
