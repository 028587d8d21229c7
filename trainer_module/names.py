"""Every name that crosses a module boundary, defined once.

Feature keys, serving signature and output keys, the Trainer's run files, the Examples artifact's
files and properties, and TFX's own node and output names that the run readers use. Writers and
readers (ImageExampleGen, Transform, Trainer, serving signatures, TFMA config, the run report, the
prediction client, bench/) all import them from here.

Plain constants, no TensorFlow: clients import this module without loading TensorFlow. It lives in
trainer_module/ because TFX hashes this folder for the Transform and Trainer cache, so a renamed
key re-runs them.
"""

# The default label space: the Intel Image Classification scenes.
INTEL_CLASS_NAMES = ("buildings", "forest", "glacier", "mountain", "sea", "street")

# ---------------------------------------------------------------- raw examples (ImageExampleGen)
IMAGE_KEY = "image"  # the file's original encoded bytes
LABEL_KEY = "label"  # int64 index into the class names
CLASS_NAME_KEY = "class_name"
PATH_KEY = "path"  # relative to the data root
HEIGHT_KEY = "height"
WIDTH_KEY = "width"
FORMAT_KEY = "format"  # jpeg, png, gif, bmp (from the file's magic bytes)

# ---------------------------------------------------------------- transformed features (preprocessing_fn)
TRANSFORMED_IMAGE_KEY = "image_resized"
TRANSFORMED_LABEL_KEY = "label"
TRANSFORMED_ONE_HOT_KEY = "label_one_hot"

# ---------------------------------------------------------------- component custom_config keys
TRAIN_CONFIG_KEY = "train_config"  # Trainer: the TrainConfig as a dict
TRANSFORM_CLASS_NAMES_KEY = "class_names"  # Transform: the label space
TRANSFORM_RESIZE_SIZE_KEY = "resize_size"  # Transform: side of the resized square image
# The pixel budget (TrainConfig.max_image_pixels): a key of Transform's custom_config and an
# ImageExampleGen execution property; the serving error and skip details name the knob by it.
MAX_IMAGE_PIXELS_KEY = "max_image_pixels"

# ---------------------------------------------------------------- serving signatures
SERVING_BYTES_SIGNATURE = "serving_default"  # encoded image bytes in, class scores out
SERVING_EXAMPLES_SIGNATURE = "serving_examples"  # serialized tf.Examples in (TFMA)
SERVING_BYTES_INPUT = "image_bytes"
SERVING_EXAMPLES_INPUT = "examples"
PROBABILITIES_OUTPUT = "probabilities"  # [batch, classes] float32
CLASS_NAMES_OUTPUT = "class_names"  # [batch, classes] string
PREDICTED_CLASS_OUTPUT = "predicted_class"  # [batch] string
PREDICTED_PROBABILITY_OUTPUT = "predicted_probability"  # [batch] float32
SERVING_OUTPUTS = (PROBABILITIES_OUTPUT, CLASS_NAMES_OUTPUT, PREDICTED_CLASS_OUTPUT,
                   PREDICTED_PROBABILITY_OUTPUT)
# In a SavedModel: TensorFlow's folder for files beside the model, and the class names in it.
EXTRA_ASSETS_DIR = "assets.extra"
CLASS_NAMES_ASSET = "class_names.json"
# In a pushed version (<serving dir>/<version>/assets.extra/): which model the AtomicPusher copied
# there, so a rerun finds a version an unrecorded push already wrote. Its JSON keys follow.
PUSH_SOURCE_FILE = "push_source.json"
PUSH_SOURCE_FINGERPRINT = "fingerprint"  # sha256 of the SavedModel's relative paths and bytes
PUSH_SOURCE_MODEL_URI = "model_uri"  # the pushed Model artifact's URI
PUSH_SOURCE_PUSHED_AT = "pushed_at"  # ISO 8601 UTC
# Inside a TFX Trainer's Model artifact: the exported SavedModel.
TRAINER_SERVING_SUBDIR = "Format-Serving"
SAVED_MODEL_FILE = "saved_model.pb"

# ---------------------------------------------------------------- the Trainer's model_run files
HISTORY_FILE = "history.json"
LR_SCHEDULE_PLOT = "lr_schedule.png"  # the (last) training phase
LR_SCHEDULE_PHASE_PLOT = "lr_schedule_{phase}.png"  # an earlier phase (frozen-backbone head)
LR_SCHEDULE_GLOB = "lr_schedule*.png"
TENSORBOARD_DIR = "tensorboard"
# Beside the model_run folders of every Trainer execution: <model_run>/../TRAINING_BACKUP_DIR/<key>,
# keyed by what identifies the training, so a rerun after a crash finds the killed one's state.
TRAINING_BACKUP_DIR = "training_backup"
BACKUP_EPOCHS_FILE = "epochs.json"  # in a backup: the logs of every finished epoch

# Keys of HISTORY_FILE (written by trainer.run_fn, read by the run report).
HISTORY_CONFIG = "config"  # the TrainConfig
HISTORY_TRAIN_EXAMPLES = "train_examples"
HISTORY_EVAL_EXAMPLES = "eval_examples"
HISTORY_DECODED_CACHED = "decoded_images_cached"
HISTORY_PRECISION = "precision"  # the Keras precision policy in force
HISTORY_REPLICAS = "replicas"
HISTORY_STEPS_PER_EPOCH = "steps_per_epoch"
HISTORY_PHASES = "phases"  # one dict per model.fit (head, fine_tune or train)
HISTORY_SERIES = "history"  # per-epoch lists: loss, accuracy, val_*, learning_rate
HISTORY_LEARNING_RATE = "learning_rate"  # in HISTORY_SERIES: the rate of each epoch's last step
HISTORY_BN_RECALIBRATION = "after_bn_recalibration"

# ---------------------------------------------------------------- the Examples artifact
INGEST_REPORT_FILE = "ingest_report.json"  # beside the splits
CLASS_NAMES_FILE = "class_names.json"  # beside the splits
# Custom properties ImageExampleGen sets on it.
PROP_CLASS_NAMES = "class_names"  # JSON list
PROP_FILES_SEEN = "files_seen"
PROP_INGESTED = "ingested"
PROP_SKIPPED = "skipped"
PROP_INGEST_REPORT = "ingest_report"  # path of INGEST_REPORT_FILE

# ---------------------------------------------------------------- TFX's names, as the run readers use them
# Node ids in create_pipeline.
EXAMPLE_GEN_NODE = "ImageExampleGen"
TRAINER_NODE = "Trainer"
EVALUATOR_NODE = "Evaluator"
PUSHER_NODE = "Pusher"
RESOLVER_NODE = "latest_blessed_model_resolver"
# Output keys.
EXAMPLES_OUTPUT = "examples"
MODEL_OUTPUT = "model"
MODEL_RUN_OUTPUT = "model_run"
EVALUATION_OUTPUT = "evaluation"
BLESSING_OUTPUT = "blessing"
PUSHED_MODEL_OUTPUT = "pushed_model"
# Properties TFX's Evaluator and Pusher set.
PROP_BLESSED = "blessed"
PROP_BASELINE_MODEL = "baseline_model"
PROP_BASELINE_MODEL_ID = "baseline_model_id"
PROP_CURRENT_MODEL_ID = "current_model_id"
PROP_PUSHED = "pushed"
PROP_PUSHED_DESTINATION = "pushed_destination"
PROP_PUSHED_VERSION = "pushed_version"
# The Evaluator execution's property: the EvalConfig it was given, as JSON (TFX's
# standard_component_specs.EVAL_CONFIG_KEY; importing that module loads TensorFlow).
EVAL_CONFIG_EXEC_PROPERTY = "eval_config"
