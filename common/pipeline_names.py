"""The pipeline's node ids, output keys, artifact properties and artifact files, defined once.

create_pipeline names the nodes, the components write the outputs, properties and files, and the
run readers (the runner's summary and progress lines, the run report, lineage, bench/, the tests)
find them by these names. Plain constants: importing this module loads nothing.
"""

# ---------------------------------------------------------------- node ids (create_pipeline)
EXAMPLE_GEN_NODE = "ImageExampleGen"
SCHEMA_GEN_NODE = "CuratedSchemaGen"
STATISTICS_GEN_NODE = "StatisticsGen"
EXAMPLE_VALIDATOR_NODE = "ExampleValidator"
SKEW_VALIDATOR_NODE = "SkewValidator"  # this run's eval split vs its train split
STATISTICS_RESOLVER_NODE = "blessed_model_statistics_resolver"  # the served model's training data
DRIFT_VALIDATOR_NODE = "DriftValidator"  # this run's train split vs the served model's train split
DATA_GATE_NODE = "DataGate"
# The latest blessed model and the examples its Trainer read (before this run's Trainer), and the
# LabelVetter that scores this run's labelled data with it; the Trainer runs after it.
LABEL_VETTING_RESOLVER_NODE = "blessed_model_training_data_resolver"
LABEL_VETTER_NODE = "LabelVetter"
TRANSFORM_NODE = "Transform"
TRAINER_NODE = "Trainer"
RESOLVER_NODE = "latest_blessed_model_resolver"
EVALUATOR_NODE = "Evaluator"
EDGE_EVALUATOR_NODE = "EdgeEvaluator"
PUSHER_NODE = "Pusher"
# With a fixed reference set (--reference-eval-dir): its ingestion, and the Evaluator that scores
# candidate and baseline on it (every split) with the same thresholds; the Pusher needs both blessings.
REFERENCE_EXAMPLE_GEN_NODE = "ReferenceExampleGen"
REFERENCE_EVALUATOR_NODE = "ReferenceEvaluator"

# ---------------------------------------------------------------- output keys
EXAMPLES_OUTPUT = "examples"
SCHEMA_OUTPUT = "schema"
STATISTICS_OUTPUT = "statistics"  # StatisticsGen's, and the statistics resolver's
ANOMALIES_OUTPUT = "anomalies"  # ExampleValidator's and DistributionValidator's
DATA_GATE_OUTPUT = "result"  # the DataGate's DataValidationResult (only when the run went on)
MODEL_OUTPUT = "model"
MODEL_RUN_OUTPUT = "model_run"
EVALUATION_OUTPUT = "evaluation"
BLESSING_OUTPUT = "blessing"
EDGE_EVALUATION_OUTPUT = "edge_evaluation"
PUSHED_MODEL_OUTPUT = "pushed_model"
REFERENCE_BLESSING_INPUT = "reference_blessing"  # the Pusher's input: the ReferenceEvaluator's blessing

# ---------------------------------------------------------------- the Examples artifact (ImageExampleGen)
INGEST_REPORT_FILE = "ingest_report.json"  # beside the splits (common/ingest_report.py)
CLASS_NAMES_FILE = "class_names.json"  # beside the splits
PROP_CLASS_NAMES = "class_names"  # JSON list
PROP_FILES_SEEN = "files_seen"
PROP_INGESTED = "ingested"
PROP_SKIPPED = "skipped"
PROP_INGEST_REPORT = "ingest_report"  # path of INGEST_REPORT_FILE
PROP_INPUT_FINGERPRINT = "input_fingerprint"  # the driver's fingerprint of the input files (absent without a driver)

# ---------------------------------------------------------------- data validation
# The schema's version (CuratedSchemaGen); on the DataGate's result the number of findings, how
# many would stop a run, and whether the run went on despite them (--proceed-despite-anomalies);
# its findings in a JSON file.
PROP_SCHEMA_VERSION = "schema_version"
PROP_FINDINGS = "findings"
PROP_BLOCKING = "blocking"
PROP_OVERRIDDEN = "proceeded_despite_anomalies"
DATA_VALIDATION_FILE = "data_validation.json"

# ---------------------------------------------------------------- label vetting (LabelVetter)
# Its output (written also when it stops the run), the JSON file in it (components/label_vetter/
# vetting.py: Vetting.to_json) and its custom properties: whether there was a blessed model to
# compare with, the classes found anomalous, the images the model could not classify, the findings.
LABEL_VETTING_OUTPUT = "label_vetting"
LABEL_VETTING_FILE = "label_vetting.json"
PROP_VETTING_COMPARED = "compared"
PROP_VETTING_ANOMALIES = "anomalous_classes"
PROP_VETTING_UNSCORED = "unscored"
PROP_VETTING_FINDINGS = "findings"
# Where TFX keeps a node's stateful working dirs, <pipeline root>/<node>/TFX_STATEFUL_WORKING_DIRS/<id>/:
# kept after a failed execution (its outputs are removed), so a stopped LabelVetter's
# LABEL_VETTING_FILE is found there by its run id.
TFX_STATEFUL_WORKING_DIRS = ".system/stateful_working_dir"

# ---------------------------------------------------------------- TFX's Evaluator and Pusher
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
# Inside a TFX Trainer's Model artifact: the exported SavedModel (TFX's own layout).
TRAINER_SERVING_SUBDIR = "Format-Serving"
SAVED_MODEL_FILE = "saved_model.pb"

# ---------------------------------------------------------------- TFMA metric keys
# The metrics pipeline/evaluation.py configures and the readers (common/tfma_results.py, the run
# report, the model card) look up in TFMA's results.
ACCURACY = "sparse_categorical_accuracy"
EXAMPLE_COUNT = "example_count"
CONFUSION_MATRIX_PLOT = "multi_class_confusion_matrix_plot"
PER_CLASS_METRICS = ("precision", "recall", "f1_score")
CALIBRATION = "calibration"
CALIBRATION_PLOT = "calibration_plot"

# ---------------------------------------------------------------- the EdgeEvaluator's artifact
# The SavedModel and each TFLite flavour scored on the same eval images by the same code, and the
# edge gate's verdict per flavour, in EDGE_EVALUATION_FILE:
#   {EDGE_EXAMPLES: n, EDGE_CLASS_NAMES: [...],
#    EDGE_MODELS: {EDGE_SAVED_MODEL | flavour: {EDGE_ACCURACY, EDGE_RECALL: {class: recall},
#                  EDGE_SIZE_MB, EDGE_LATENCY_MS, EDGE_BATCH_LATENCY_MS, EDGE_PATH}},
#    EDGE_GATE: {flavour: {EDGE_MAX_DROP, EDGE_DROP, EDGE_PASSED, EDGE_REASON}}}
EDGE_EVALUATION_FILE = "edge_evaluation.json"
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

# ---------------------------------------------------------------- a pushed version (AtomicPusher)
# <serving dir>/<version>/tflite/: the TFLite flavours that passed the edge gate.
PUSHED_EDGE_SUBDIR = "tflite"
# Properties the AtomicPusher sets on the pushed model: the flavours it pushed beside the SavedModel
# (comma-separated, "" for none) and, per flavour held back, why.
PROP_PUSHED_EDGE_MODELS = "pushed_edge_models"
PROP_EDGE_HELD_BACK = "edge_models_held_back"  # JSON {flavour: reason}
# <serving dir>/<version>/assets.extra/PUSH_SOURCE_FILE: which model the AtomicPusher copied there,
# so a rerun finds a version an unrecorded push already wrote. Its JSON keys follow.
PUSH_SOURCE_FILE = "push_source.json"
PUSH_SOURCE_FINGERPRINT = "fingerprint"  # sha256 of the SavedModel's relative paths and bytes
PUSH_SOURCE_MODEL_URI = "model_uri"  # the pushed Model artifact's URI
PUSH_SOURCE_PUSHED_AT = "pushed_at"  # ISO 8601 UTC
# <serving dir>/<version>/assets.extra/: the version's model card (common/model_card.py), written by
# the Pusher in the same atomic step as the model: the card as JSON, and its Markdown and HTML pages.
MODEL_CARD_JSON = "model_card.json"
MODEL_CARD_MD = "model_card.md"
MODEL_CARD_HTML = "model_card.html"
# <serving dir>/: release control (common/releases.py): the state (labels, rollback history) and
# TF Serving's model config file written from it, with the version labels stable and canary.
RELEASES_FILE = "releases.json"
MODEL_CONFIG_FILE = "models.config"
# The PushedModel's property: what the push did to the labels, in words (common/releases.py).
PROP_RELEASE = "release"
