"""Tests of trainer_module.data: the Trainer's tf.data path from raw examples to model batches."""
import numpy as np
import pytest
import tensorflow as tf

import image_factory
from components.image_example_gen import make_example
from trainer_module import augmentation, data, preprocessing
from trainer_module.config import TrainConfig

CLASSES = ("a", "b", "c")
RAW_SPEC = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}


def _write_records(path, n):
    images = [image_factory.jpeg_bytes(20 + 7 * i, 30 + 11 * (i % 3), seed=i) for i in range(n)]
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i, image in enumerate(images):
            writer.write(make_example(image, i % 3, CLASSES[i % 3], f"x/{i}.jpg", 1, 1, "jpeg")
                         .SerializeToString())
    return images


def _tft_layer(cfg):
    # The Transform graph's ops without the SavedModel wrapper (tft_layer takes the parsed features).
    config = {"class_names": list(CLASSES), "resize_size": cfg.resize_size}
    return lambda inputs: preprocessing.preprocessing_fn(inputs, config)


@pytest.fixture()
def records(tmp_path):
    path = tmp_path / "data-00000-of-00001.gz"
    return str(path), _write_records(path, 10)


def test_eval_batches_are_the_graph_output_centre_cropped(records):
    path, images = records
    cfg = TrainConfig(class_names=CLASSES, batch_size=4, image_size=32, resize_size=40)
    batches = list(data.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, training=False))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]  # one pass, the last batch kept
    got = np.concatenate([b[0].numpy() for b in batches])
    assert got.dtype == np.float32
    want = augmentation.center_crop(preprocessing.decode_and_resize(tf.constant(images), 40), 32).numpy()
    np.testing.assert_array_equal(got, want)  # uint8 transport loses nothing
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(labels.argmax(1), [i % 3 for i in range(10)])


def test_training_batches_are_whole_augmented_and_mixed(records):
    path, _ = records
    cfg = TrainConfig(class_names=CLASSES, batch_size=4, image_size=32, resize_size=40,
                      cutmix_probability=1.0, shuffle_buffer=16)
    tf.random.set_seed(0)
    ds = data.make_dataset([path], _tft_layer(cfg), RAW_SPEC, cfg, training=True)
    batches = list(ds.take(8))  # endless: 8 batches of 4 from 10 records
    for images, labels in batches:
        assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
        np.testing.assert_array_equal(images.numpy(), np.round(images.numpy()))
        assert 0.0 <= images.numpy().min() and images.numpy().max() <= 255.0
        np.testing.assert_allclose(labels.numpy().sum(1), 1.0, atol=1e-6)
    soft = np.concatenate([labels.numpy() for _, labels in batches]).max(1) < 1.0
    assert soft.mean() > 0.5  # CutMix at probability 1 mixes most rows


def test_missing_files_are_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        data.list_files([str(tmp_path / "*.gz")])
