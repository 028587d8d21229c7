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

# The Python logger of progress lines (the Trainer's epochs) that a local run shows on its console.
PROGRESS_LOGGER = "intel_scenes.progress"

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
# [batch] string: "" for a classified image; for one that is not, why (one of the prefixes
# below, then ": " and details), with zero probabilities, predicted_class "" and probability 0.
ERROR_OUTPUT = "error"
SERVING_OUTPUTS = (PROBABILITIES_OUTPUT, CLASS_NAMES_OUTPUT, PREDICTED_CLASS_OUTPUT,
                   PREDICTED_PROBABILITY_OUTPUT, ERROR_OUTPUT)
# ERROR_OUTPUT's prefixes; an image over the pixel budget gets image_header.TOO_MANY_PIXELS.
NOT_AN_IMAGE_ERROR = "not_an_image"  # the magic bytes are not JPEG, PNG, GIF or BMP
UNDECODABLE_ERROR = "undecodable"  # a known format whose data the decoder refuses (corrupt, truncated)
# In a SavedModel's assets.extra: TF Serving's warm-up requests (the file name TF Serving looks
# for), a TFRecord of PredictionLogs made from this many eval images.
WARMUP_REQUESTS_FILE = "tf_serving_warmup_requests"
WARMUP_IMAGES = 4
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
# Inside a Trainer's Model artifact, beside TRAINER_SERVING_SUBDIR: the edge (TFLite) models of
# the same trained network (trainer_module/tflite_export.py), one file per flavour, and the labels
# file (also packed into each model's metadata). The AtomicPusher copies the ones that passed the
# edge gate into the pushed version's PUSHED_EDGE_SUBDIR (<serving dir>/<version>/tflite/).
EDGE_MODEL_SUBDIR = "Format-TFLite"
PUSHED_EDGE_SUBDIR = "tflite"
TFLITE_FLAVOURS = ("float16", "int8")
TFLITE_FILE = "model_{flavour}.tflite"
TFLITE_LABELS_FILE = "labels.txt"
TFLITE_INPUT_SPEC_FILE = "input_spec.json"  # packed into each model's metadata: size, crop, range, colour order
# Keys of TFLITE_INPUT_SPEC_FILE.
INPUT_SPEC_IMAGE_SIZE = "image_size"  # the model's input side (pixels)
INPUT_SPEC_RESIZE_SIZE = "resize_size"  # the app resizes to this square side, then centre-crops image_size
INPUT_SPEC_DTYPE = "dtype"  # uint8
INPUT_SPEC_RANGE = "range"  # [0, 255]
INPUT_SPEC_COLOR = "color"  # RGB
INPUT_SPEC_RESIZE_METHOD = "resize_method"  # bilinear, antialiased when shrinking
# The EdgeEvaluator's artifact (components/edge_evaluator/): the SavedModel and each TFLite flavour
# scored on the same eval images by the same code, and the edge gate's verdict per flavour.
EDGE_EVALUATOR_NODE = "EdgeEvaluator"
EDGE_EVALUATION_OUTPUT = "edge_evaluation"
EDGE_EVALUATION_FILE = "edge_evaluation.json"
# Keys of EDGE_EVALUATION_FILE: {EDGE_EXAMPLES: n, EDGE_CLASS_NAMES: [...],
#   EDGE_MODELS: {EDGE_SAVED_MODEL | flavour: {EDGE_ACCURACY, EDGE_RECALL: {class: recall},
#                                             EDGE_SIZE_MB, EDGE_LATENCY_MS, EDGE_BATCH_LATENCY_MS, EDGE_PATH}},
#   EDGE_GATE: {flavour: {EDGE_MAX_DROP, EDGE_DROP, EDGE_PASSED, EDGE_REASON}}}
EDGE_EXAMPLES = "examples"
EDGE_CLASS_NAMES = "class_names"
EDGE_MODELS = "models"
EDGE_SAVED_MODEL = "saved_model"
EDGE_ACCURACY = "accuracy"
EDGE_RECALL = "recall"
EDGE_SIZE_MB = "size_mb"  # SavedModel: its variables; TFLite: the .tflite file
EDGE_LATENCY_MS = "latency_ms"  # median CPU time per image, one image per call
EDGE_BATCH_LATENCY_MS = "batch_latency_ms"  # median CPU time per image, in batches of 32
EDGE_PATH = "path"
EDGE_GATE = "gate"
EDGE_MAX_DROP = "max_drop"  # the margin: largest accuracy drop below the SavedModel's allowed
EDGE_DROP = "drop"  # SavedModel accuracy - flavour accuracy (same images)
EDGE_PASSED = "passed"
EDGE_REASON = "reason"
# Properties the AtomicPusher sets on the pushed model: the flavours it pushed beside the SavedModel
# (comma-separated, "" for none) and, per flavour held back, why.
PROP_PUSHED_EDGE_MODELS = "pushed_edge_models"
PROP_EDGE_HELD_BACK = "edge_models_held_back"  # JSON {flavour: reason}

# ---------------------------------------------------------------- the Trainer's model_run files
HISTORY_FILE = "history.json"
LR_SCHEDULE_PLOT = "lr_schedule.png"  # the (last) training phase
LR_SCHEDULE_PHASE_PLOT = "lr_schedule_{phase}.png"  # an earlier phase (frozen-backbone head)
LR_SCHEDULE_GLOB = "lr_schedule*.png"
TENSORBOARD_DIR = "tensorboard"
# TensorBoard runs (folders) under TENSORBOARD_DIR and their scalar tags. Keras' TensorBoard callback
# writes TB_TRAIN_RUN and "validation", tagging each epoch log "epoch_<key>" (step: epoch).
TB_TRAIN_RUN = "train"
TB_EPOCH_LEARNING_RATE = "epoch_learning_rate"  # "epoch_" + HISTORY_LEARNING_RATE; step: epoch
TB_STEP_LEARNING_RATE = "step_learning_rate"  # in TB_TRAIN_RUN; step: global training step from 0
# The exported model after training (Trainer), at step = epochs: just past the last epoch's point.
TB_FINAL_RUN = "final"
TB_FINAL_VAL_ACCURACY = "final/val_accuracy"  # the exported model (after the BatchNorm re-estimate)
TB_FINAL_VAL_LOSS = "final/val_loss"
TB_FINAL_VAL_ACCURACY_BEFORE = "final/val_accuracy_before_bn_recalibration"  # = the last epoch's
TB_FINAL_VAL_LOSS_BEFORE = "final/val_loss_before_bn_recalibration"
TB_FINAL_BN_KEPT = "final/bn_recalibration_kept"  # 1 kept, 0 discarded
TB_FINAL_BN_TRAIN_LOSS_BEFORE = "final/bn_recalibration_train_loss_before"  # what decided "kept"
TB_FINAL_BN_TRAIN_LOSS_AFTER = "final/bn_recalibration_train_loss_after"
# The Evaluator's metrics of the candidate (run report), at step = epochs, in one events file per
# model run (a name TensorBoard reads: it holds "tfevents"), replaced whenever the report is rewritten.
TB_EVALUATOR_RUN = "evaluator"
TB_EVALUATOR_EVENTS_FILE = "events.out.tfevents.evaluator"
TB_EVALUATOR_ACCURACY = "evaluator/accuracy"
TB_EVALUATOR_MACRO_F1 = "evaluator/macro_f1"
TB_EVALUATOR_BLESSED = "evaluator/blessed"  # 1 blessed, 0 not
TB_EVALUATOR_CLASS_TAG = "evaluator/{metric}/{class_name}"  # metric: precision, recall, f1
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
# Data validation (pipeline/pipeline.py; components/data_gate/).
STATISTICS_GEN_NODE = "StatisticsGen"
SCHEMA_GEN_NODE = "CuratedSchemaGen"
EXAMPLE_VALIDATOR_NODE = "ExampleValidator"
STATISTICS_RESOLVER_NODE = "blessed_model_statistics_resolver"  # the served model's training data
DRIFT_VALIDATOR_NODE = "DriftValidator"  # this run's train split vs the served model's train split
SKEW_VALIDATOR_NODE = "SkewValidator"  # this run's eval split vs its train split
DATA_GATE_NODE = "DataGate"
TRANSFORM_NODE = "Transform"
# Output keys.
EXAMPLES_OUTPUT = "examples"
MODEL_OUTPUT = "model"
MODEL_RUN_OUTPUT = "model_run"
EVALUATION_OUTPUT = "evaluation"
BLESSING_OUTPUT = "blessing"
PUSHED_MODEL_OUTPUT = "pushed_model"
STATISTICS_OUTPUT = "statistics"  # StatisticsGen's, and the statistics resolver's
SCHEMA_OUTPUT = "schema"
ANOMALIES_OUTPUT = "anomalies"  # ExampleValidator's and DistributionValidator's
DATA_GATE_OUTPUT = "result"  # the DataGate's DataValidationResult (only when the run went on)
# Properties TFX's Evaluator and Pusher set.
PROP_BLESSED = "blessed"
PROP_BASELINE_MODEL = "baseline_model"
PROP_BASELINE_MODEL_ID = "baseline_model_id"
PROP_CURRENT_MODEL_ID = "current_model_id"
PROP_PUSHED = "pushed"
PROP_PUSHED_DESTINATION = "pushed_destination"
PROP_PUSHED_VERSION = "pushed_version"
# Properties of the data validation's artifacts: the schema's version (CuratedSchemaGen), and on
# the DataGate's result the number of findings, how many would stop a run, and whether the run
# went on despite them (the --proceed-despite-anomalies override); its findings in a JSON file.
PROP_SCHEMA_VERSION = "schema_version"
PROP_FINDINGS = "findings"
PROP_BLOCKING = "blocking"
PROP_OVERRIDDEN = "proceeded_despite_anomalies"
DATA_VALIDATION_FILE = "data_validation.json"
# The Evaluator execution's property: the EvalConfig it was given, as JSON (TFX's
# standard_component_specs.EVAL_CONFIG_KEY; importing that module loads TensorFlow).
EVAL_CONFIG_EXEC_PROPERTY = "eval_config"
