"""ImageExampleGen's executor: lists the files, then reads, checks and writes them with Beam.

Each ingested file becomes one tf.Example (records.make_example; names.py has the keys):
  image       the file's original encoded bytes (no re-encoding),
  label       int64 index into the class names,
  class_name  the class folder's name,
  path        the path relative to the data root,
  height, width, format  from the decoder (for data validation),
  content_*   the content statistics of the decoded pixels (common/image_content.STATISTICS:
              brightness, contrast, saturation, colourfulness, sharpness, aspect ratio), which
              TFDV's drift and skew comparators watch (pipeline/data_validation.py).
The same reader hashes each decoded image (content hash, perceptual hash); duplicates.py finds
exact duplicates within and across splits and near duplicates between train and eval, and the
report counts and lists them (the data gate turns cross-split ones into an anomaly).
Files that cannot be used are counted by reason and listed in `ingest_report.json` beside the
splits; a file whose header declares more pixels than `max_image_pixels` is one of them, refused
before it is decoded (a decompression bomb must not exhaust a worker's memory). The class names
travel with the artifact (custom property and `class_names.json`).

Record order is a property of the files written, not of the runner: each split is written in
shards, and each shard holds its records sorted by a hash of their relative path, so classes are
mixed in every stretch of every file (a Trainer shuffling with a bounded buffer would otherwise
see one-class batches) and a rerun writes the same bytes. Runs unchanged on Dataflow.
"""
import hashlib
import json
import math
import os
from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from common import dataset, image_content, ingest_report, pipeline_names
from components.image_example_gen import driver, duplicates, image_files
from components.image_example_gen.records import make_example
from trainer_module import image_format, names

# Records per output shard: a shard is sorted in one worker's memory (~15 KB a record on Intel).
EXAMPLES_PER_SHARD = 4096
SHARD_PREFIX = "data_tfrecord"
# Perceptual hashes of a train and an eval image this close (bits of 64) make a near duplicate.
DEFAULT_NEAR_DUPLICATE_MAX_HAMMING = 4


def order_key(relpath: str) -> str:
    """The sort key of a record: a stable pseudo-random function of its relative path."""
    return hashlib.sha256(("order:" + relpath).encode("utf-8")).hexdigest()


class _ReadAndEncode(beam.DoFn):
    """Reads one file; emits (split, class name, order key, serialized example), on the `hashes`
    output its duplicates.ImageHash, or, on the `skipped` output, a SkippedFile saying which file
    was skipped and why. The content statistics and hashes come from the pixels check_and_decode
    already decoded (content=False leaves them out: bench/content_cost.py measures their cost)."""

    SKIPPED = "skipped"
    HASHES = "hashes"

    def __init__(self, class_names: List[str], max_image_pixels: int, content: bool = True):
        self._label_of = {name: i for i, name in enumerate(class_names)}
        self._max_image_pixels = max_image_pixels
        self._content = content

    def process(self, entry: Dict[str, str]):
        try:
            with tf.io.gfile.GFile(entry["path"], "rb") as f:
                data = f.read()
        except (OSError, tf.errors.OpError) as e:
            reason, detail = ingest_report.SKIP_UNREADABLE, str(e)
        else:
            reason, detail, info, pixels = image_files.check_and_decode(data, self._max_image_pixels)
        if reason is not None:
            beam.metrics.Metrics.counter("ImageExampleGen", f"skipped_{reason}").inc()
            yield beam.pvalue.TaggedOutput(self.SKIPPED, ingest_report.SkippedFile(
                path=entry["relpath"], split=entry["split"], class_name=entry["class_name"],
                reason=reason, detail=detail))
            return
        height, width, fmt = info
        beam.metrics.Metrics.counter("ImageExampleGen", f"ingested_{entry['split']}").inc()
        content = None
        if self._content:
            content = image_content.statistics(pixels)
            yield beam.pvalue.TaggedOutput(self.HASHES, duplicates.ImageHash.of(
                entry["split"], entry["relpath"], pixels))
        example = make_example(data, self._label_of[entry["class_name"]], entry["class_name"],
                               entry["relpath"], height, width, fmt, content)
        yield entry["split"], entry["class_name"], order_key(entry["relpath"]), example.SerializeToString()


def shard_path(split_uri: str, shard: int, num_shards: int) -> str:
    return os.path.join(split_uri, f"{SHARD_PREFIX}-{shard:05d}-of-{num_shards:05d}.gz")


def write_shard(shard_and_records: Tuple[int, Iterable[Tuple[str, bytes]]], split_uri: str,
                num_shards: int) -> str:
    """Writes one shard's records sorted by order key (GZIP TFRecords, renamed into place)."""
    shard, records = shard_and_records
    tf.io.gfile.makedirs(split_uri)
    path = shard_path(split_uri, shard, num_shards)
    partial = path + ".partial"
    with tf.io.TFRecordWriter(partial, options="GZIP") as writer:
        for _, serialized in sorted(records):
            writer.write(serialized)
    tf.io.gfile.rename(partial, path, overwrite=True)
    return path


def num_shards_for(n_files: int) -> int:
    return max(1, math.ceil(n_files / EXAMPLES_PER_SHARD))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists the files, then reads, checks and writes them with Beam (runs on Dataflow unchanged)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict[pipeline_names.EXAMPLES_OUTPUT])
        max_image_pixels = exec_properties.get(names.MAX_IMAGE_PIXELS_KEY, image_format.DEFAULT_MAX_IMAGE_PIXELS)
        near_max_hamming = exec_properties.get(driver.NEAR_DUPLICATE_MAX_HAMMING_KEY)
        near_max_hamming = DEFAULT_NEAR_DUPLICATE_MAX_HAMMING if near_max_hamming is None else int(near_max_hamming)
        listing = driver.take_listing(exec_properties)
        logging.info("ImageExampleGen: %d files under %s (%s split), classes %s",
                     len(listing.files), listing.root, listing.split_mode, listing.class_names)
        for path, why in listing.ignored_dirs:
            logging.warning("ImageExampleGen: not reading %s: %s", path, why)

        examples.split_names = artifact_utils.encode_split_names(list(dataset.SPLITS))
        report_path = report_path_of(examples)
        tf.io.gfile.makedirs(examples.uri)
        with self._make_beam_pipeline() as p:
            results = (p
                       | "ListFiles" >> beam.Create([f.__dict__ for f in listing.files])
                       | "Spread" >> beam.Reshuffle()
                       | "ReadAndCheck" >> beam.ParDo(
                           _ReadAndEncode(listing.class_names, max_image_pixels)).with_outputs(
                               _ReadAndEncode.SKIPPED, _ReadAndEncode.HASHES, main="examples"))
            for split in dataset.SPLITS:
                n_shards = num_shards_for(sum(f.split == split for f in listing.files))
                split_uri = artifact_utils.get_split_uri([examples], split)
                _ = (results.examples
                     | f"Select[{split}]" >> beam.Filter(lambda r, s=split: r[0] == s)
                     | f"Shard[{split}]" >> beam.Map(
                         lambda r, n=n_shards: (int(r[2][:8], 16) % n, (r[2], r[3])))
                     | f"GroupShards[{split}]" >> beam.GroupByKey()
                     | f"Write[{split}]" >> beam.Map(write_shard, split_uri=split_uri, num_shards=n_shards))
            counts = (results.examples
                      | "SplitClass" >> beam.Map(lambda r: (r[0], r[1]))
                      | "Count" >> beam.combiners.Count.PerElement())
            found = (results[_ReadAndEncode.HASHES]
                     | "Duplicates" >> duplicates.FindDuplicates(near_max_hamming,
                                                                 ingest_report.MAX_LISTED_DUPLICATES))
            _ = (p
                 | "ReportSeed" >> beam.Create([None])
                 | "WriteReport" >> beam.Map(
                     _write_report, listing=listing, report_path=report_path,
                     skipped=beam.pvalue.AsList(results[_ReadAndEncode.SKIPPED]),
                     counts=beam.pvalue.AsList(counts), found=beam.pvalue.AsList(found),
                     near_max_hamming=near_max_hamming))

        report = ingest_report.read(report_path)
        _record_on_artifact(examples, report)
        if exec_properties.get(driver.INPUT_FINGERPRINT_KEY):  # the data a pushed model's card names
            examples.set_string_custom_property(pipeline_names.PROP_INPUT_FINGERPRINT,
                                                exec_properties[driver.INPUT_FINGERPRINT_KEY])
        logging.info("ImageExampleGen: ingested %d, skipped %d %s; report %s", report.ingested,
                     report.skipped, report.skipped_by_reason, report_path)
        dup = report.duplicates
        logging.info("ImageExampleGen: duplicates: %d extra copies within splits; %d train/eval pairs "
                     "exact, %d near (perceptual hash within %d bits)", dup.within_split,
                     dup.cross_split_exact, dup.cross_split_near, dup.near_max_hamming)
        ingest_report.check(report, report_path)


def _write_report(_, listing, report_path, skipped, counts, found, near_max_hamming) -> None:
    report = ingest_report.build(listing, listing.unread, list(skipped), list(counts),
                                 duplicates.report(found, near_max_hamming))
    with tf.io.gfile.GFile(report_path, "w") as f:
        f.write(report.to_json())


def _record_on_artifact(examples: types.Artifact, report: ingest_report.IngestReport) -> None:
    examples.span = 0
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    examples.set_string_custom_property(pipeline_names.PROP_CLASS_NAMES, json.dumps(report.class_names))
    examples.set_int_custom_property(pipeline_names.PROP_FILES_SEEN, report.files_seen)
    examples.set_int_custom_property(pipeline_names.PROP_INGESTED, report.ingested)
    examples.set_int_custom_property(pipeline_names.PROP_SKIPPED, report.skipped)
    examples.set_string_custom_property(pipeline_names.PROP_INGEST_REPORT, report_path_of(examples))
    with tf.io.gfile.GFile(os.path.join(examples.uri, pipeline_names.CLASS_NAMES_FILE), "w") as f:
        json.dump(report.class_names, f)


def report_path_of(examples: types.Artifact) -> str:
    return os.path.join(examples.uri, pipeline_names.INGEST_REPORT_FILE)
