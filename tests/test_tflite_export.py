"""TFLite export (trainer_module/tflite_export.py) and its runtime (serving_client/tflite_classifier.py).

One tiny MobileNetV3 small (32 px, alpha 0.5), trained for a few steps on generated images whose
class is the brightest channel, is converted once to both flavours (module fixtures); the tests
check the files, the metadata, the input contract and the numbers against the Keras model.
"""
import dataclasses
import io
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tensorflow.lite.python import schema_py_generated as model_fb

import image_factory
from common import tflite_classifier
from common.tflite_classifier import TFLiteClassifier
from third_party.tflite_metadata import metadata_schema_py_generated as metadata_fb
from trainer_module import model as model_lib, model_input, names, preprocessing, tflite_export, tflite_format
from trainer_module.train_config import TrainConfig

CLASSES = ("red", "green", "blue")
SIZE, RESIZE = 32, 40
CFG = TrainConfig(class_names=CLASSES, image_size=SIZE, resize_size=RESIZE, alpha=0.5, dropout=0.0,
                  optimizer="adam", learning_rate=0.005, batch_size=16, tflite_calibration_images=64)


def _crops(n: int, seed: int):
    """(uint8 [n, S, S, 3] noise, labels): each image is brighter in its class's channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = rng.integers(0, 150, [n, SIZE, SIZE, 3])
    images[np.arange(n), :, :, labels] += 100
    return images.astype(np.uint8), labels


def _batches(images, labels) -> tf.data.Dataset:
    """make_dataset(training=False)'s form: (float32 crops, one-hot) batches."""
    one_hot = np.eye(len(CLASSES), dtype=np.float32)[labels]
    return tf.data.Dataset.from_tensor_slices((images.astype(np.float32), one_hot)).batch(CFG.batch_size)


@pytest.fixture(scope="module")
def keras_model() -> keras.Model:
    """build_model's network after 10 eager Adam steps (tracing Keras' train function would take
    longer than the steps), with its BatchNorm statistics re-estimated (they lag a short run)."""
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(CFG)
    optimizer, loss = keras.optimizers.Adam(CFG.learning_rate), keras.losses.CategoricalCrossentropy()
    train = _batches(*_crops(96, seed=1))
    for images, one_hot in train.repeat().take(10):
        with tf.GradientTape() as tape:
            value = loss(one_hot, model(images, training=True))
        weights = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(value, weights), weights))
    model_lib.recalibrate_batchnorm(model, train, 6)
    return model


@pytest.fixture(scope="module")
def exported(keras_model, tmp_path_factory):
    """{flavour: path} of both flavours, and their folder."""
    out_dir = tmp_path_factory.mktemp("edge") / names.EDGE_MODEL_SUBDIR
    representative = _batches(*_crops(64, seed=2))
    return tflite_export.export_edge_models(keras_model, CFG, representative, str(out_dir)), out_dir


@pytest.fixture(scope="module")
def classifiers(exported):
    return {flavour: TFLiteClassifier(path) for flavour, path in exported[0].items()}


@pytest.fixture(scope="module")
def eval_crops(keras_model):
    """(uint8 crops, the Keras model's probabilities on them)."""
    images, _ = _crops(60, seed=3)
    return images, keras_model(images.astype(np.float32), training=False).numpy()


def test_both_flavours_and_the_labels_are_written(exported):
    paths, out_dir = exported
    assert paths == {f: str(out_dir / names.TFLITE_FILE.format(flavour=f)) for f in names.TFLITE_FLAVOURS}
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [names.TFLITE_LABELS_FILE, "model_float16.tflite", "model_int8.tflite"])
    assert (out_dir / names.TFLITE_LABELS_FILE).read_text() == "red\ngreen\nblue\n"
    sizes = {f: (out_dir / names.TFLITE_FILE.format(flavour=f)).stat().st_size for f in paths}
    print(f"sizes: {sizes}")
    assert sizes["int8"] < 0.8 * sizes["float16"]  # measured 0.71 at this width (~0.55 at alpha 1)


def test_metadata_holds_the_labels_and_the_input_spec(exported):
    for path in exported[0].values():
        labels, spec = tflite_classifier.read_metadata(path)
        assert labels == CLASSES
        assert spec == {names.INPUT_SPEC_IMAGE_SIZE: SIZE, names.INPUT_SPEC_RESIZE_SIZE: RESIZE,
                        names.INPUT_SPEC_DTYPE: "uint8", names.INPUT_SPEC_RANGE: [0, 255],
                        names.INPUT_SPEC_COLOR: "RGB",
                        names.INPUT_SPEC_RESIZE_METHOD: "bilinear, antialiased when shrinking"}
        content = open(path, "rb").read()
        metadata = tflite_format.model_metadata(content)
        assert metadata.minParserVersion == b"1.0.0"
        image = metadata.subgraphMetadata[0].inputTensorMetadata[0]
        assert image.description.decode() == (
            "uint8 RGB image [1, 32, 32, 3]: the image resized to 40x40 (bilinear, antialiased when "
            "shrinking), then its centre 32x32 crop; values 0-255, not normalised "
            "(the model normalises them).")
        assert image.content.contentProperties.colorSpace == metadata_fb.ColorSpaceType.RGB
        assert (image.processUnits[0].options.mean, image.processUnits[0].options.std) == ([0.0], [1.0])
        assert (image.stats.min, image.stats.max) == ([0.0], [255.0])
        assert [f.name.decode() for f in image.associatedFiles] == [names.TFLITE_INPUT_SPEC_FILE]
        output = metadata.subgraphMetadata[0].outputTensorMetadata[0]
        assert [f.name.decode() for f in output.associatedFiles] == [names.TFLITE_LABELS_FILE]
        assert output.associatedFiles[0].type == metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS
        assert output.stats.max == [255.0 if path.endswith("int8.tflite") else 1.0]  # uint8 or probabilities
        assert sorted(tflite_format.packed_files(content)) == sorted([names.TFLITE_LABELS_FILE,
                                                                      names.TFLITE_INPUT_SPEC_FILE])


def test_the_metadata_is_where_litert_readers_look(exported):
    """LiteRT's readers (tflite-support's MetadataDisplayer, the Task Library) find the metadata by
    the model's TFLITE_METADATA entry and its M001 identifier, and the files in the appended zip."""
    content = open(exported[0]["float16"], "rb").read()
    model = model_fb.Model.GetRootAs(content, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    buffer = model.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()
    assert buffer[4:8] == b"M001"
    assert zipfile.ZipFile(io.BytesIO(content)).read(names.TFLITE_LABELS_FILE) == b"red\ngreen\nblue\n"


def test_writing_the_metadata_again_replaces_it(exported):
    content = open(exported[0]["int8"], "rb").read()
    again = tflite_format.with_metadata(content, name="n", description="d", input_description="i",
                                        output_description="o", labels=["x", "y", "z"], input_spec={"a": 1},
                                        input_spec_description="s")
    model_entries = model_fb.Model.GetRootAs(again, 0).MetadataLength()
    assert model_entries == model_fb.Model.GetRootAs(content, 0).MetadataLength()
    assert tflite_format.read_metadata(again) == (("x", "y", "z"), {"a": 1})
    assert len(again) < len(content) + 2000  # the old metadata and files are not carried along


def test_the_input_is_uint8_pixels_and_int8_is_integer_throughout(exported):
    details = {}
    for flavour, path in exported[0].items():
        interpreter = tf.lite.Interpreter(model_path=path)
        details[flavour] = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        assert details[flavour][0]["dtype"] == np.uint8
        assert details[flavour][0]["shape"].tolist() == [1, SIZE, SIZE, 3]
        assert details[flavour][1]["shape"].tolist() == [1, len(CLASSES)]
    (f16_in, f16_out), (int8_in, int8_out) = details["float16"], details["int8"]
    assert f16_in["quantization"] == (0.0, 0) and f16_out["dtype"] == np.float32  # a Cast takes the pixels
    assert int8_in["quantization"] == (1.0, 0)  # the uint8 input is the pixel itself
    assert int8_out["dtype"] == np.uint8 and int8_out["quantization"] == (1 / 256, 0)


def test_float16_matches_the_keras_model(classifiers, eval_crops):
    images, expected = eval_crops
    assert expected.max(axis=1).mean() > 0.6  # the tiny model is confident: top-1 is a fair test
    got = classifiers["float16"].predict(images)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.01
    assert (got.argmax(1) == expected.argmax(1)).mean() == 1.0


def test_int8_agrees_with_the_keras_model(classifiers, eval_crops):
    images, expected = eval_crops
    got = classifiers["int8"].predict(images)
    agreement = (got.argmax(1) == expected.argmax(1)).mean()
    print(f"int8: top-1 agreement {agreement:.3f}, max |p - p_keras| {np.abs(got - expected).max():.3f}")
    assert agreement >= 0.9
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=0.05)  # dequantized probabilities


@pytest.mark.parametrize("flavour", names.TFLITE_FLAVOURS)
def test_a_batch_gives_what_one_by_one_gives(classifiers, eval_crops, flavour):
    images = eval_crops[0][:5]
    classifier = classifiers[flavour]
    one_by_one = np.concatenate([classifier.predict(image[np.newaxis]) for image in images])
    np.testing.assert_allclose(classifier.predict(images), one_by_one, atol=1e-6)
    assert classifier.predict(images[:0]).shape == (0, len(CLASSES))
    with pytest.raises(ValueError, match=r"expected images \[n, 32, 32, 3\]"):
        classifier.predict(images[:, :16])


@pytest.mark.parametrize("data", [image_factory.jpeg_bytes(120, 90, seed=4),
                                  image_factory.png_bytes(25, 33, mode="L"),
                                  image_factory.png_bytes(50, 50, mode="RGBA")],
                         ids=["jpeg-shrinks-antialiased", "greyscale-png-grows", "rgba-png"])
def test_preprocess_gives_the_serving_signatures_pixels(data):
    expected = model_input.inference_input(preprocessing.decode_and_resize(tf.constant([data]), RESIZE), SIZE)
    got = tflite_classifier.preprocess(data, RESIZE, SIZE)
    assert got.dtype == np.uint8 and got.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(got, expected[0].numpy())


def test_preprocess_refuses_a_corrupt_or_too_large_image():
    with pytest.raises(tf.errors.InvalidArgumentError):
        tflite_classifier.preprocess(image_factory.corrupt_jpeg_bytes(), RESIZE, SIZE)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too_many_pixels"):
        tflite_classifier.preprocess(image_factory.png_bytes(30, 30), RESIZE, SIZE, max_pixels=100)


def test_classify_encoded_answers_per_image_as_the_serving_signature(classifiers):
    """Bad images get serving_default's reasons and zero probabilities; the others are classified."""
    images = [image_factory.jpeg_bytes(60, 50, seed=7), image_factory.corrupt_jpeg_bytes(),
              b"not an image", image_factory.png_bytes(45, 45, seed=8)]
    classifier = classifiers["float16"]
    probabilities, errors = classifier.classify_encoded(images)
    assert errors == ["", f"{names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data",
                      f"{names.NOT_AN_IMAGE_ERROR}: not a JPEG, PNG, GIF or BMP file", ""]
    assert (probabilities[[1, 2]] == 0).all()
    crops = np.stack([tflite_classifier.preprocess(images[i], RESIZE, SIZE) for i in (0, 3)])
    np.testing.assert_allclose(probabilities[[0, 3]], classifier.predict(crops), atol=1e-6)


def test_calibration_takes_the_extremes_then_count_images_of_either_batch_form():
    images, labels = _crops(10, seed=5)
    for dataset in (_batches(images, labels), _batches(images, labels).map(lambda x, _: x)):
        got = list(tflite_export.calibration_images(dataset, 7))
        assert len(got) == 9 and all(g.shape == (1, SIZE, SIZE, 3) and g.dtype == np.float32 for g in got)
        assert (got[0] == 0).all() and (got[1] == 255).all()
        np.testing.assert_array_equal(np.concatenate(got[2:]), images[:7])


def test_a_mixed_precision_model_is_exported_from_a_float32_clone(keras_model):
    assert tflite_export.float32_model(keras_model) is keras_model
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = model_lib.build_model(CFG)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(keras_model.get_weights())
    clone = tflite_export.float32_model(mixed)
    assert {layer.compute_dtype for layer in clone.submodules if isinstance(layer, keras.layers.Layer)} == {
        "float32"}
    images = _crops(4, seed=6)[0].astype(np.float32)
    np.testing.assert_allclose(clone(images).numpy(), keras_model(images).numpy(), atol=1e-5)


# ---------------------------------------------------------------- the served model: flip-averaged, calibrated

TEMPERATURE = 0.5  # sharper: the recipes' networks are under-confident


@pytest.fixture(scope="module")
def calibrated(keras_model, tmp_path_factory):
    """(the Keras inference model as the Trainer exports it: flip-averaged logits divided by a
    temperature; {flavour: TFLiteClassifier} of its conversions)."""
    cfg = dataclasses.replace(CFG, test_time_flip=True)
    network = model_lib.inference_model(keras_model, cfg, TEMPERATURE)
    out_dir = tmp_path_factory.mktemp("calibrated")
    paths = tflite_export.export_edge_models(network, cfg, _batches(*_crops(64, seed=2)), str(out_dir))
    return network, {flavour: TFLiteClassifier(path) for flavour, path in paths.items()}


def test_the_temperature_is_in_both_edge_models_and_int8_keeps_its_output_scale(calibrated, eval_crops):
    network, classifiers = calibrated
    images, _ = eval_crops
    expected = network(images.astype(np.float32), training=False).numpy()
    assert expected.max(axis=1).mean() > 0.8  # sharpened: a wrong temperature would show
    float16 = classifiers["float16"].predict(images)
    assert np.abs(float16 - expected).max() < 0.01
    assert (float16.argmax(1) == expected.argmax(1)).mean() == 1.0
    int8 = classifiers["int8"].predict(images)
    assert (int8.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert np.abs(int8.max(1) - expected.max(1)).mean() < 0.05  # the top-1 probability, 8 bits
    interpreter = tf.lite.Interpreter(model_path=classifiers["int8"].path)
    assert interpreter.get_output_details()[0]["quantization"] == (1 / 256, 0)  # probabilities, not logits
    for classifier in classifiers.values():
        content = open(classifier.path, "rb").read()
        output = tflite_format.model_metadata(content).subgraphMetadata[0].outputTensorMetadata[0]
        assert f"temperature {TEMPERATURE:g} fitted on the eval split" in output.description.decode()


def test_an_unknown_flavour_is_refused(keras_model):
    with pytest.raises(ValueError, match="unknown TFLite flavour 'int4'"):
        tflite_export.convert(keras_model, CFG, "int4", None)


# ---------------------------------------------------------------- files that are not such models

@pytest.fixture(scope="module")
def plain_tflite(tmp_path_factory) -> str:
    """A valid TFLite model without metadata."""
    function = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([1, 2], tf.float32))
    path = tmp_path_factory.mktemp("plain") / "plain.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function]).convert())
    return str(path)


def test_a_model_without_metadata_is_refused(plain_tflite):
    with pytest.raises(ValueError, match=f"{plain_tflite} has no readable labels and input spec in its "
                                         "TFLite metadata .*: it has no TFLITE_METADATA entry"):
        TFLiteClassifier(plain_tflite)


def test_a_file_that_is_not_a_tflite_model_is_refused(tmp_path, exported):
    text = image_factory.write_file(tmp_path / "notes.tflite", b"just some text, not a model")
    with pytest.raises(ValueError, match="notes.tflite is not a TFLite model \\(no TFL3 identifier\\)"):
        TFLiteClassifier(text)
    truncated = (tmp_path / "cut.tflite")
    truncated.write_bytes(open(exported[0]["int8"], "rb").read()[:4000])
    with pytest.raises(ValueError, match="cut.tflite has no readable labels and input spec"):
        tflite_classifier.read_metadata(str(truncated))
