"""The names the Transform and the Trainer use and write, defined once: the examples' feature
keys, the transformed features, their custom_config keys, the serving signatures and their outputs,
the model artifact's files (SavedModel extras, TFLite models and their metadata), and the Trainer's
run files (history, TensorBoard tags, crash backup).

Every other level imports them from here. Names the Trainer does not use (node ids, artifact
properties, report files) live in common/artifacts.py: TFX hashes this folder for the Transform and
Trainer cache, so a name here re-runs both when it changes and a name there never does.
Plain constants, no TensorFlow: clients import this module without loading TensorFlow.
"""

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
# The pixel budget (image_format.DEFAULT_MAX_IMAGE_PIXELS): a key of Transform's custom_config and an
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
# ERROR_OUTPUT's prefixes; an image over the pixel budget gets image_format.TOO_MANY_PIXELS.
NOT_AN_IMAGE_ERROR = "not_an_image"  # the magic bytes are not JPEG, PNG, GIF or BMP
UNDECODABLE_ERROR = "undecodable"  # a known format whose data the decoder refuses (corrupt, truncated)
# In a SavedModel's assets.extra: TF Serving's warm-up requests (the file name TF Serving looks
# for), a TFRecord of PredictionLogs made from this many eval images.
WARMUP_REQUESTS_FILE = "tf_serving_warmup_requests"
WARMUP_IMAGES = 4
# In a SavedModel: TensorFlow's folder for files beside the model, and the class names in it.
EXTRA_ASSETS_DIR = "assets.extra"
CLASS_NAMES_ASSET = "class_names.json"
# Inside a Trainer's Model artifact, beside the SavedModel (TFX's Format-Serving): the edge (TFLite)
# models of the same trained network (tflite_export.py), one file per flavour, and the labels file
# (also packed into each model's metadata, tflite_format.py).
EDGE_MODEL_SUBDIR = "Format-TFLite"
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
# The temperature fitted after training (calibration.py), in HISTORY_FILE: {key: value} below.
HISTORY_CALIBRATION = "calibration"  # {} when temperature_scaling is off
CALIBRATION_TEMPERATURE = "temperature"  # the served probabilities are softmax(logits / temperature)
CALIBRATION_EXAMPLES = "examples"  # eval examples it was fitted and measured on
CALIBRATION_AT_BOUND = "at_bound"  # the fit stopped at calibration.MIN/MAX_TEMPERATURE
CALIBRATION_ACCURACY = "accuracy"  # top-1 accuracy on them, the same before and after
CALIBRATION_ECE_BEFORE = "ece_before"  # expected calibration error with T = 1 (the network as trained)
CALIBRATION_ECE_AFTER = "ece_after"  # with the fitted T (what is served)
CALIBRATION_NLL_BEFORE = "nll_before"  # mean negative log-likelihood, what the fit minimises
CALIBRATION_NLL_AFTER = "nll_after"
CALIBRATION_MEAN_TOP1_BEFORE = "mean_top1_before"  # mean top-1 probability
CALIBRATION_MEAN_TOP1_AFTER = "mean_top1_after"
