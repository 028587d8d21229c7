"""What the served model was trained on, as the monitor compares it with the traffic: the class and
image size statistics StatisticsGen wrote for its training examples, the content statistics of a
bounded sample of those examples, and the confidence its Evaluator saw on the eval split.

Found through ML Metadata: the pushed version named in the logs (the PushedModel whose
pushed_version it is; the latest push otherwise) -> the Pusher's input model -> the Trainer that
wrote it -> its input examples -> the StatisticsGen output of those examples
(components/statistics_resolver.training_statistics_ids, the drift baseline's own lineage), and
the Evaluator that read that model (its calibration plot: the top-1 probabilities on eval).

The content statistics (common/image_content.py) are computed here from the image bytes of up to
`sample` training examples (the GZIP TFRecords' first records: ImageExampleGen sorts its shards by
a hash of the path, so the first records are a mix of every class): ingestion does not record them
in the examples yet. Once it does, they are in the StatisticsGen output and this sample can go.

`from_folder` builds the same reference from a labelled image folder (--reference-data), for
traffic whose model has no ML Metadata at hand (a Vertex endpoint's logs read elsewhere).
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

from common import dataset, file_walk, image_content, pipeline_names, prediction_log, store, tfma_results
from components.data_gate import findings
from components.statistics_resolver import training_statistics_ids
from trainer_module import image_format, names

DEFAULT_SAMPLE = 500


@dataclasses.dataclass
class Reference:
    """The training side of every comparison."""
    description: str  # where it came from, for the page and the console
    label_stats: statistics_pb2.DatasetFeatureStatisticsList  # class_name, height, width
    content: pd.DataFrame  # one row per sampled training image: image_content.STATISTICS
    class_counts: Dict[str, int]
    confidence: List[tfma_results.CalibrationBucket]  # [] when no Evaluator result is found
    model_version: str = ""


def _stats_list(stats: statistics_pb2.DatasetFeatureStatistics) -> statistics_pb2.DatasetFeatureStatisticsList:
    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.datasets.add().CopyFrom(stats)
    return out


def sample_examples(examples_uri: str, split: str, limit: int) -> pd.DataFrame:
    """Content statistics of up to `limit` examples of one split of an Examples artifact."""
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    rows = []
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit).as_numpy_iterator():
        example = tf.train.Example.FromString(raw)
        data = example.features.feature[names.IMAGE_KEY].bytes_list.value[0]
        try:
            rows.append(image_content.statistics(image_content.decode(data)))
        except Exception:  # noqa: BLE001 - an example that does not decode is left out of the sample
            continue
    return pd.DataFrame(rows, columns=list(image_content.STATISTICS))


def _pushed_model(mlmd, version: Optional[str]):
    pushed = store.pushed_models(mlmd)
    if not pushed:
        raise LookupError("no pushed model recorded in ML Metadata: nothing is served yet")
    matching = [p for p in pushed if version and str(store.custom_property(
        p, pipeline_names.PROP_PUSHED_VERSION)) == str(version)]
    return (matching or pushed)[-1]


def _evaluation_uri(mlmd, model_id: int) -> Optional[str]:
    """The output of the Evaluator that read the model as its candidate (the latest one)."""
    readers = {e.execution_id for e in mlmd.get_events_by_artifact_ids([model_id])
               if e.type == e.INPUT and e.path.steps and e.path.steps[0].key == pipeline_names.MODEL_OUTPUT}
    for execution in sorted(mlmd.get_executions_by_id(readers), key=lambda e: -e.id):
        found = store.step(mlmd, execution)
        if found.node_id == pipeline_names.EVALUATOR_NODE and found.output(pipeline_names.EVALUATION_OUTPUT):
            return found.output(pipeline_names.EVALUATION_OUTPUT).uri
    return None


def from_metadata(metadata: str, version: Optional[str], sample: int = DEFAULT_SAMPLE) -> Reference:
    """The reference of the pushed model `version` (the latest push when no push has it)."""
    path = store.find_metadata(metadata)
    mlmd = store.open_readonly(path)
    pushed = _pushed_model(mlmd, version)
    pusher = store.producing_step(mlmd, pushed)
    model = pusher.input(pipeline_names.MODEL_OUTPUT)
    if model is None:
        raise LookupError(f"the push of {pushed.uri} records no input model")
    trainer = store.producing_step(mlmd, model)
    examples = trainer.input(pipeline_names.EXAMPLES_OUTPUT)
    stats_ids = sorted(training_statistics_ids(mlmd, model.id))
    if examples is None or not stats_ids:
        raise LookupError(f"ML Metadata records no training examples or statistics for the model {model.uri}")
    stats_uri = mlmd.get_artifacts_by_id([stats_ids[-1]])[0].uri
    train = findings.load_statistics(stats_uri, dataset.TRAIN)
    if train is None:
        raise LookupError(f"no train split statistics in {stats_uri}")
    evaluation = _evaluation_uri(mlmd, model.id)
    confidence: List[tfma_results.CalibrationBucket] = []
    class_names = store.custom_property(examples, pipeline_names.PROP_CLASS_NAMES)
    if evaluation and tfma_results.has_results(evaluation):
        results = tfma_results.load(evaluation, len(json.loads(class_names)) if class_names else 0)
        confidence = results.calibration.get(results.candidate, [])
    pushed_version = str(store.custom_property(pushed, pipeline_names.PROP_PUSHED_VERSION) or "")
    return Reference(
        f"training data of pushed version {pushed_version or pushed.uri} (examples {examples.uri}, "
        f"statistics {stats_uri})",
        _stats_list(train), sample_examples(examples.uri, dataset.TRAIN, sample),
        findings.value_counts(train, names.CLASS_NAME_KEY), confidence, pushed_version)


def from_folder(root: str, schema, sample: int = DEFAULT_SAMPLE) -> Reference:
    """The reference of a labelled folder (<root>/<class>/<file> or <root>/<train split>/<class>/<file>:
    the train split when there is one), without ML Metadata and without a confidence reference."""
    split_root = next((os.path.join(root, d) for d in dataset.TRAIN_DIR_NAMES
                       if os.path.isdir(os.path.join(root, d))), root)
    rows, content = [], []
    for class_name in sorted(os.listdir(split_root)):
        folder = os.path.join(split_root, class_name)
        if not os.path.isdir(folder) or class_name.lower() in dataset.UNLABELLED_DIR_NAMES:
            continue
        for path in sorted(file_walk.walk_files(folder).files):
            with open(path, "rb") as f:
                data = f.read()
            size = image_format.image_dimensions(data)
            if size is None:
                continue
            rows.append({names.CLASS_NAME_KEY: class_name, names.WIDTH_KEY: size[0], names.HEIGHT_KEY: size[1]})
            if len(content) < sample:
                content.append(image_content.statistics(image_content.decode(data)))
    if not rows:
        raise LookupError(f"no labelled images in {root}")
    frame = pd.DataFrame(rows)
    stats = tfdv.generate_statistics_from_dataframe(frame, tfdv.StatsOptions(schema=schema))
    return Reference(f"labelled folder {root}", stats, pd.DataFrame(content, columns=list(image_content.STATISTICS)),
                     frame[names.CLASS_NAME_KEY].value_counts().to_dict(), [])


def window_versions(records: Sequence[Dict]) -> Optional[str]:
    """The model version most records of the window name (None without records)."""
    versions = pd.Series([str(r.get(prediction_log.MODEL_VERSION, "")) for r in records])
    return versions.mode().iloc[0] if len(versions) else None

