"""Level 0: the Trainer user module, the Transform and Trainer code, with the names and formats they
write. TFX packages this folder as the user module.

    preprocessing.py   the Transform module: decode, resize, one-hot (preprocessing_fn)
    trainer.py         the Trainer module: run_fn trains, evaluates per epoch and exports
    input_pipeline.py  tf.data input: raw examples through the Transform graph; augmentation.py its ops
    model.py           MobileNetV3 with a small head, and the inference model (flip-averaged logits,
                       divided by the temperature); model_input.py the crop made for eval and serving
    calibration.py     temperature scaling: the fit on the eval split, the expected calibration error
    schedules.py       learning-rate schedules (Keras'); progress.py the Trainer's progress lines
    signatures.py      the serving signatures (image bytes; tf.Example for TFMA); serving_warmup.py
                       TF Serving's warm-up requests
    tflite_export.py   the TFLite models (float16, int8); tflite_format.py their metadata, written and read
    image_format.py    image formats (magic bytes) and sizes from the header: the pixel budget
    train_config.py    TrainConfig, the training recipe; knobs.py the self-documenting config fields
    keras_tracing.py   AutoGraph leaves tf_keras' own code unconverted (most of a trace's time)
    names.py           every name the Transform and Trainer use and write
    missing_piece.py   a feature whose native piece does not load: one line naming it and the fix

TFX hashes every .py file here for the Transform and Trainer cache (an edit here re-runs both) and
ships them in a wheel as top-level modules (`names`, `model`, `trainer`, ...), installed at the END
of sys.path. It imports only the entry modules (`preprocessing`, `trainer`) by those bare names;
everything else is imported through this package (`from trainer_module import ...`), never as a
bare sibling, and no other importable module shares a name with a file here
(tests/test_user_module_wheel.py checks both), so the top-level copies cannot shadow or be shadowed.
Nothing here imports another package of the project (third_party/ aside): tests/test_layout.py.

TF Transform and TFMA need Keras 2: tf_keras is selected before TensorFlow loads.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
