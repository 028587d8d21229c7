"""ImageExampleGen: a Beam TFX component that ingests a labelled image folder as tf.Examples.

Why a custom component: TFX's ImportExampleGen reads TFRecords and FileBasedExampleGen needs one
PTransform per input pattern; neither reads class folders, checks each image or reports skips.

Each ingested file becomes one tf.Example with
  image       the file's original encoded bytes (no re-encoding),
  label       int64 index into the sorted class names,
  class_name  the class folder's name,
  path        the path relative to the data root,
  height, width, format  from the decoder (for data validation).
Files that cannot be used are counted by reason and listed in `ingest_report.json` beside the
splits; ingested + skipped always equals the files seen. The class names travel with the artifact
(custom property `class_names` and `class_names.json`).
"""
import collections
import hashlib
import json
import os
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import image_files
from trainer_module.features import CLASS_NAME_KEY, IMAGE_KEY, LABEL_KEY

REPORT_FILE = "ingest_report.json"
CLASS_NAMES_FILE = "class_names.json"
SKIP_OUTSIDE_CLASS_FOLDER = "outside_class_folder"

PATH_KEY = "path"


class ImageIngestError(RuntimeError):
    """The data cannot make a dataset (nothing usable, or a class/split left empty)."""


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(data: bytes, label: int, class_name: str, relpath: str,
                 height: int, width: int, fmt: str) -> tf.train.Example:
    """The tf.Example for one image file (bytes kept exactly as read)."""
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: _bytes_feature(data),
        LABEL_KEY: _int_feature(label),
        CLASS_NAME_KEY: _bytes_feature(class_name.encode("utf-8")),
        PATH_KEY: _bytes_feature(relpath.encode("utf-8")),
        "height": _int_feature(height),
        "width": _int_feature(width),
        "format": _bytes_feature(fmt.encode("utf-8")),
    }))


def shuffled_order(files: List[image_files.ImageFile]) -> List[image_files.ImageFile]:
    """The files in a stable pseudo-random order (by a hash of the relative path), classes mixed.

    The local runner writes records in this order. Listed order groups them by class, and a
    Trainer that shuffles with a bounded buffer (when the decoded images do not fit in memory)
    would then see whole batches of one class.
    """
    return sorted(files, key=lambda f: hashlib.sha256(("order:" + f.relpath).encode("utf-8")).hexdigest())


class _ReadAndEncode(beam.DoFn):
    """Reads one file; emits (split, serialized example) or, on the `skipped` output, the reason."""

    SKIPPED = "skipped"

    def __init__(self, class_names: List[str]):
        self._label_of = {name: i for i, name in enumerate(class_names)}

    def process(self, entry: Dict[str, str]):
        try:
            with tf.io.gfile.GFile(entry["path"], "rb") as f:
                data = f.read()
        except (OSError, tf.errors.OpError) as e:
            reason, detail = image_files.SKIP_UNREADABLE, str(e)
        else:
            reason, info = image_files.inspect_image(data)
            detail = ""
        if reason is not None:
            beam.metrics.Metrics.counter("ImageExampleGen", f"skipped_{reason}").inc()
            yield beam.pvalue.TaggedOutput(self.SKIPPED, dict(
                path=entry["relpath"], split=entry["split"], class_name=entry["class_name"],
                reason=reason, detail=detail))
            return
        height, width, fmt = info
        beam.metrics.Metrics.counter("ImageExampleGen", f"ingested_{entry['split']}").inc()
        example = make_example(data, self._label_of[entry["class_name"]], entry["class_name"],
                               entry["relpath"], height, width, fmt)
        yield entry["split"], entry["class_name"], example.SerializeToString()


def build_report(listing: image_files.DatasetListing, stray: List[Dict[str, str]],
                 skipped: List[Dict[str, str]], counts: List[Any]) -> Dict[str, Any]:
    """The machine-readable ingest report (also the source of the artifact's properties)."""
    skipped = sorted(stray + skipped, key=lambda s: s["path"])
    ingested = {split: {c: 0 for c in listing.class_names} for split in image_files.SPLITS}
    for (split, class_name), n in counts:
        ingested[split][class_name] = n
    by_reason = collections.Counter(s["reason"] for s in skipped)
    n_ingested = sum(sum(v.values()) for v in ingested.values())
    return {
        "data_root": listing.root,
        "split_mode": listing.split_mode,
        "split_dirs": listing.split_dirs,
        "class_names": listing.class_names,
        "files_seen": len(listing.files) + len(listing.stray_files),
        "ingested": n_ingested,
        "skipped": len(skipped),
        "ingested_by_split_and_class": ingested,
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "skipped_files": skipped,
        "ignored_dirs": [{"path": p, "why": w} for p, w in listing.ignored_dirs],
        "ignored_files": listing.other_files,
    }


def check_report(report: Dict[str, Any], report_path: str) -> None:
    """Raises ImageIngestError when the ingested data cannot train and evaluate a classifier."""
    where = f"{report['data_root']} (see {report_path})"
    if report["ingested"] == 0:
        raise ImageIngestError(f"no usable images in {where}; skipped: {report['skipped_by_reason']}")
    per_split = report["ingested_by_split_and_class"]
    empty = [c for c, n in per_split[image_files.TRAIN].items() if n == 0]
    if empty:
        raise ImageIngestError(f"class(es) {empty} have no usable train images in {where}")
    if sum(per_split[image_files.EVAL].values()) == 0:
        raise ImageIngestError(f"the eval split is empty for {where}: add an eval folder "
                               "(val/, test/) or raise eval_fraction")


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists the files, then reads, checks and writes them with Beam (runs on Dataflow unchanged)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        class_names = json.loads(exec_properties["class_names"]) or None
        listing = image_files.list_image_files(
            exec_properties["input_base"], class_names, exec_properties["eval_fraction"])
        logging.info("ImageExampleGen: %d files under %s (%s split), classes %s",
                     len(listing.files), listing.root, listing.split_mode, listing.class_names)
        for path, why in listing.ignored_dirs:
            logging.warning("ImageExampleGen: not reading %s: %s", path, why)
        stray = [dict(path=image_files.relative_path(p, listing.root), split="", class_name="",
                      reason=SKIP_OUTSIDE_CLASS_FOLDER, detail="") for p in listing.stray_files]

        examples.split_names = artifact_utils.encode_split_names(list(image_files.SPLITS))
        report_path = os.path.join(examples.uri, REPORT_FILE)
        with self._make_beam_pipeline() as p:
            results = (p
                       | "ListFiles" >> beam.Create([f.__dict__ for f in shuffled_order(listing.files)])
                       | "Spread" >> beam.Reshuffle()
                       | "ReadAndCheck" >> beam.ParDo(_ReadAndEncode(listing.class_names)).with_outputs(
                           _ReadAndEncode.SKIPPED, main="examples"))
            for split in image_files.SPLITS:
                _ = (results.examples
                     | f"Select[{split}]" >> beam.Filter(lambda r, s=split: r[0] == s)
                     | f"Serialized[{split}]" >> beam.Map(lambda r: r[2])
                     | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                         os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord"),
                         file_name_suffix=".gz"))
            counts = (results.examples
                      | "SplitClass" >> beam.Map(lambda r: (r[0], r[1]))
                      | "Count" >> beam.combiners.Count.PerElement())
            _ = (p
                 | "ReportSeed" >> beam.Create([None])
                 | "WriteReport" >> beam.Map(
                     _write_report, listing=listing, stray=stray, report_path=report_path,
                     skipped=beam.pvalue.AsList(results[_ReadAndEncode.SKIPPED]),
                     counts=beam.pvalue.AsList(counts)))

        with tf.io.gfile.GFile(report_path) as f:
            report = json.load(f)
        _record_on_artifact(examples, report)
        logging.info("ImageExampleGen: ingested %d, skipped %d %s; report %s", report["ingested"],
                     report["skipped"], report["skipped_by_reason"], report_path)
        check_report(report, report_path)


def _write_report(_, listing, stray, report_path, skipped, counts) -> None:
    report = build_report(listing, stray, list(skipped), list(counts))
    with tf.io.gfile.GFile(report_path, "w") as f:
        json.dump(report, f, indent=1)


def _record_on_artifact(examples: types.Artifact, report: Dict[str, Any]) -> None:
    examples.span = 0
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    examples.set_string_custom_property("class_names", json.dumps(report["class_names"]))
    examples.set_int_custom_property("files_seen", report["files_seen"])
    examples.set_int_custom_property("ingested", report["ingested"])
    examples.set_int_custom_property("skipped", report["skipped"])
    examples.set_string_custom_property("ingest_report", os.path.join(examples.uri, REPORT_FILE))
    with tf.io.gfile.GFile(os.path.join(examples.uri, CLASS_NAMES_FILE), "w") as f:
        json.dump(report["class_names"], f)


class ImageExampleGenSpec(ComponentSpec):
    """Parameters and output of ImageExampleGen."""
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        # JSON list; "[]" derives the classes from the train folders.
        "class_names": ExecutionParameter(type=str),
        "eval_fraction": ExecutionParameter(type=float),
        # Hash of the input files, so that TFX's cache sees data changes.
        "input_fingerprint": ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests `<input_base>/<split>/<class>/<image>` (or `<input_base>/<class>/<image>`)."""

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, class_names: List[str] = (), eval_fraction: float = 0.2,
                 input_fingerprint: str = ""):
        super().__init__(spec=ImageExampleGenSpec(
            input_base=input_base, class_names=json.dumps(list(class_names)),
            eval_fraction=float(eval_fraction), input_fingerprint=input_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples)))

