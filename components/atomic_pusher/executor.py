"""AtomicPusher's executor: TFX's Pusher executor with atomic, recorded filesystem pushes.

A push to a local serving directory:
  1. removes `.partial-*` folders a killed push left behind;
  2. lists what the version will hold: the SavedModel's files and, with an EdgeEvaluation input,
     the TFLite flavours whose edge gate passed plus their labels file, under `tflite/`;
  3. fingerprints that list (sha256 over the relative paths and bytes; the TFLite files are part
     of the version, so the same SavedModel with other edge models is another version);
  4. if the newest version holds a marker with that fingerprint (a push that wrote the version
     but was never recorded), records that version instead of copying again;
  5. otherwise copies the files into `<base>/.partial-<version>-<random>` (TF Serving only loads
     numeric folders), writes the marker `assets.extra/push_source.json`, fsyncs, then renames the
     folder to `<base>/<version>`: Serving and apps see a complete version (SavedModel and TFLite
     files together) or none. On failure the partial folder is removed and PushError names the
     serving directory and the cause.
The version is the unix time, or the newest existing version + 1 when that is not above it, so
the latest push is always the version TF Serving's default policy serves.

Each version also holds its model card (common/model_card.py: JSON, Markdown and HTML in
assets.extra/), built from the Pusher's inputs (the evaluation, examples, model run, edge
evaluation and data gate result, each optional) and written into the partial folder with the
model, so a version never exists without its card. Once the version is in place, the push is
recorded in the serving dir's release files (common/releases.py: releases.json and TF Serving's
models.config with the labels stable and canary), under their lock; a rerun that reuses an
unrecorded version records it there too (and writes the card into a version pushed before
model cards, file by file through a rename). The card also goes into the PushedModel's archive copy.

With a reference_blessing input (the ReferenceEvaluator's, when the pipeline has a fixed
reference set), the model must be blessed there too (ReferenceBlessingCheck); not blessed on
either, nothing is pushed.

The pushed_model artifact also gets pipeline_names.PROP_PUSHED_EDGE_MODELS (the flavours pushed) and
pipeline_names.PROP_EDGE_HELD_BACK ({flavour: why not}); the archive copy to its URI holds the same files.
Not blessed, nothing is pushed and the properties are TFX's. Destinations other than a local
folder (gs://, other URL schemes, non-filesystem) go to TFX's executor unchanged (an object store
has no atomic rename): there the TFLite files stay in the Model artifact, the card is written into
the version after TFX's copy, and there are no release files (TF Serving's config file names
local versions; on Vertex AI the VertexRegistryPusher keeps the releases in the Model Registry).
"""
import dataclasses
import datetime
import hashlib
import json
import os
import posixpath
import shutil
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.components.util import model_utils
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from common import durable, model_card, pipeline_names, releases
from components.edge_evaluator import gate
from trainer_module import names

EDGE_EVALUATION_KEY = pipeline_names.EDGE_EVALUATION_OUTPUT  # the optional input: the EdgeEvaluator's verdict
# The optional inputs the model card reads (besides the model, the blessing and the edge evaluation).
EVALUATION_KEY = pipeline_names.EVALUATION_OUTPUT  # the Evaluator's ModelEvaluation (TFMA's results)
EXAMPLES_KEY = pipeline_names.EXAMPLES_OUTPUT  # ImageExampleGen's Examples (the ingest report)
MODEL_RUN_KEY = pipeline_names.MODEL_RUN_OUTPUT  # the Trainer's ModelRun (history.json)
DATA_VALIDATION_KEY = "data_validation"  # the DataGate's DataValidationResult
# The execution parameter: the base_path written into models.config (where TF Serving sees the serving dir).
SERVING_BASE_PATH_KEY = "serving_base_path"
REFERENCE_BLESSING_KEY = pipeline_names.REFERENCE_BLESSING_INPUT  # the optional input: the reference set's verdict
PARTIAL_PREFIX = ".partial-"
_CHUNK_BYTES = 1 << 20
_SUPPORTED_VERSIONING = (pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP)


class PushError(RuntimeError):
    """A push to a serving directory failed; no version and no partial folder was left there."""


def local_base_directory(exec_properties: Dict[str, Any]) -> Optional[str]:
    """The serving directory of a filesystem push to a local path; None for anything else."""
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    if destination.WhichOneof("destination") != "filesystem":
        return None
    filesystem = destination.filesystem
    if "://" in filesystem.base_directory:
        return None
    if filesystem.versioning not in _SUPPORTED_VERSIONING:
        raise NotImplementedError(f"Invalid Versioning {filesystem.versioning}")
    return filesystem.base_directory


def model_files(model_path: str) -> Tuple[List[str], List[str]]:
    """(sub-folders, files) of the model, relative with `/`, sorted."""
    folders, files = [], []
    for dirpath, dirnames, filenames in fileio.walk(model_path):
        rel = os.path.relpath(dirpath, model_path)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        folders += [prefix + d.rstrip("/") for d in dirnames]
        files += [prefix + f for f in filenames]
    return sorted(folders), sorted(files)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with fileio.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def saved_model_sources(model_path: str) -> Tuple[List[str], Dict[str, str]]:
    """(sub-folders, {relative path in the version: source file}) of the SavedModel."""
    folders, files = model_files(model_path)
    return folders, {rel: os.path.join(model_path, rel) for rel in files}


def fingerprint(sources: Dict[str, str]) -> str:
    """sha256 over every file's relative path in the version and content hash, read in chunks.

    A SavedModel alone gives the digest it gave before edge models were pushed beside it, so a
    version written then is still recognised.
    """
    digest = hashlib.sha256()
    for rel in sorted(sources):
        digest.update(f"{rel}\0{_file_sha256(sources[rel])}\n".encode("utf-8"))
    return digest.hexdigest()


@dataclasses.dataclass
class EdgePush:
    """The edge models of a push: {relative path in the version: source}, the flavours pushed and
    {flavour: why it is held back}."""
    sources: Dict[str, str]
    pushed: List[str]
    held_back: Dict[str, str]


def read_edge_evaluation(uri: str) -> Dict[str, Any]:
    path = os.path.join(uri, pipeline_names.EDGE_EVALUATION_FILE)
    with fileio.open(path, "r") as f:
        return json.load(f)


def edge_push(evaluation: Dict[str, Any], model_uri: str) -> EdgePush:
    """The flavours that passed the edge gate, from the pushed Model artifact's Format-TFLite, and
    their labels file; a flavour the evaluation scored elsewhere (another model) is held back."""
    edge_dir = os.path.join(model_uri, names.EDGE_MODEL_SUBDIR)
    labels = os.path.join(edge_dir, names.TFLITE_LABELS_FILE)
    held_back, sources = gate.held_back(evaluation), {}
    for flavour in gate.passed_flavours(evaluation):
        source = os.path.join(edge_dir, names.TFLITE_FILE.format(flavour=flavour))
        scored = evaluation[pipeline_names.EDGE_MODELS][flavour][pipeline_names.EDGE_PATH]
        if os.path.normpath(scored) != os.path.normpath(source):
            held_back[flavour] = f"the edge evaluation scored {scored}, not the pushed model's {source}"
        elif not fileio.exists(labels):
            held_back[flavour] = f"its labels file {labels} is missing"
        else:
            sources[posixpath.join(pipeline_names.PUSHED_EDGE_SUBDIR, os.path.basename(source))] = source
    if sources:
        sources[posixpath.join(pipeline_names.PUSHED_EDGE_SUBDIR, names.TFLITE_LABELS_FILE)] = labels
    return EdgePush(sources, [f for f in gate.passed_flavours(evaluation) if f not in held_back], held_back)


def numeric_versions(base: str) -> Dict[int, str]:
    """{version: folder name} of the folders TF Serving would load (numeric names)."""
    return {int(name): name for name in os.listdir(base)
            if name.isdigit() and os.path.isdir(os.path.join(base, name))}


def next_version(existing: List[int], now: float) -> int:
    """The unix time, or one above the newest existing version when that is not below it."""
    return max([int(now)] + [v + 1 for v in existing])


def marker_path(version_dir: str) -> str:
    return os.path.join(version_dir, names.EXTRA_ASSETS_DIR, pipeline_names.PUSH_SOURCE_FILE)


def read_marker(version_dir: str) -> Optional[Dict[str, Any]]:
    """The version's push record, or None (pushed by another tool, or unreadable)."""
    try:
        with open(marker_path(version_dir)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def reusable_version(base: str, model_fingerprint: str) -> Optional[str]:
    """The newest version if it holds this model (a push that was never recorded), else None.

    An older version with the same model is not reused: recording it would report a push that
    TF Serving does not serve (a newer version wins), so the model is pushed again (a rollback).
    """
    versions = numeric_versions(base)
    matching = [v for v, name in versions.items()
                if (read_marker(os.path.join(base, name)) or {}).get(pipeline_names.PUSH_SOURCE_FINGERPRINT)
                == model_fingerprint]
    if not matching:
        return None
    newest = max(versions)
    if newest in matching:
        return versions[newest]
    logging.info("AtomicPusher: versions %s of %s hold this model but %s is newer; pushing again.",
                 sorted(matching), base, versions[newest])
    return None


def remove_stale_partials(base: str) -> None:
    """Removes the partial folders a killed push left behind."""
    for name in sorted(os.listdir(base)):
        if name.startswith(PARTIAL_PREFIX):
            logging.warning("AtomicPusher: removing %s, left by an interrupted push.",
                            os.path.join(base, name))
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def copy_file(src: str, dst: str) -> None:
    """Copies one file (any filesystem TFX reads) to a local path and fsyncs it."""
    with fileio.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK_BYTES)
        fout.flush()
        os.fsync(fout.fileno())


def write_marker(version_dir: str, record: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(marker_path(version_dir)), exist_ok=True)
    with open(marker_path(version_dir), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str, data: bytes) -> None:
    """Writes a new local file and fsyncs it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_version(sources: Dict[str, str], folders: List[str], target: str, record: Dict[str, Any],
                  extra_files: Optional[Dict[str, bytes]] = None) -> None:
    """Copies the files into `target` (saved_model.pb last, then the extra files, e.g. the model
    card, and the marker) and fsyncs it all."""
    os.makedirs(target)
    for rel in folders:
        os.makedirs(os.path.join(target, rel), exist_ok=True)
    # saved_model.pb last, as TFX's Pusher: readers of a non-atomic copy wait for it.
    for rel in sorted(sources, key=lambda r: (r == pipeline_names.SAVED_MODEL_FILE, r)):
        copy_file(sources[rel], os.path.join(target, rel))
    for rel, data in sorted((extra_files or {}).items()):
        os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
        write_bytes(os.path.join(target, rel), data)
    write_marker(target, record)
    for rel in [""] + folders + [names.EXTRA_ASSETS_DIR]:
        durable.fsync_path(os.path.join(target, rel))


ExtraFiles = Callable[[str, Dict[str, Any]], Dict[str, bytes]]  # (version, marker record) -> {rel path: bytes}


def add_missing_files(version_dir: str, files: Dict[str, bytes]) -> None:
    """Writes each file the version lacks, each through a temporary name and a rename (the version
    is already served: a reader sees a file whole or not at all)."""
    for rel, data in sorted(files.items()):
        path = os.path.join(version_dir, rel)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            write_bytes(tmp, data)
            os.replace(tmp, path)


def push_new_version(model_path: str, base: str, folders: List[str], sources: Dict[str, str],
                     record: Dict[str, Any], extra_files: Optional[ExtraFiles] = None) -> str:
    """Writes the files as a new version through a partial folder; returns the version name.
    extra_files: files that name the version (the model card), written in the same partial folder."""
    version = str(next_version(list(numeric_versions(base)), time.time()))
    partial = os.path.join(base, f"{PARTIAL_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        write_version(sources, folders, partial, record, extra_files(version, record) if extra_files else None)
        # Atomic on one filesystem; fails (ENOTEMPTY) if another writer took the version meanwhile.
        os.rename(partial, os.path.join(base, version))
        durable.fsync_path(base)
    except Exception as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise PushError(f"Push of {model_path} to serving dir {base} failed, nothing was left "
                        f"there: {type(e).__name__}: {e}") from e
    return version


def push_to_directory(model_path: str, base: str, model_uri: str, edge: Optional[EdgePush] = None,
                      extra_files: Optional[ExtraFiles] = None) -> str:
    """Pushes the model (and its edge models, and the extra files) to `base` once: reuses an
    unrecorded version holding the same model files, else writes one."""
    os.makedirs(base, exist_ok=True)
    remove_stale_partials(base)
    folders, sources = saved_model_sources(model_path)
    if edge and edge.sources:
        folders, sources = folders + [pipeline_names.PUSHED_EDGE_SUBDIR], {**sources, **edge.sources}
    model_fingerprint = fingerprint(sources)
    version = reusable_version(base, model_fingerprint)
    if version is not None:
        logging.info("AtomicPusher: %s already holds this model (fingerprint %s); reusing it.",
                     os.path.join(base, version), model_fingerprint[:16])
        if extra_files:  # a version pushed before model cards gets its card now
            add_missing_files(os.path.join(base, version), extra_files(version, read_marker(os.path.join(base, version))))
        return version
    record = {pipeline_names.PUSH_SOURCE_FINGERPRINT: model_fingerprint,
              pipeline_names.PUSH_SOURCE_MODEL_URI: model_uri,
              pipeline_names.PUSH_SOURCE_PUSHED_AT: datetime.datetime.now(datetime.timezone.utc).isoformat()}
    version = push_new_version(model_path, base, folders, sources, record, extra_files)
    logging.info("AtomicPusher: model written to %s.", os.path.join(base, version))
    return version


def archive_model(model_path: str, pushed_model_uri: str, edge: Optional[EdgePush] = None,
                  card_dir: Optional[str] = None) -> None:
    """TFX's archive copy of the pushed model into the PushedModel artifact, edge models included,
    and the card files of the version in card_dir (its assets.extra/)."""
    io_utils.copy_dir(model_path, pushed_model_uri)
    for rel, source in (edge.sources if edge else {}).items():
        fileio.makedirs(os.path.dirname(os.path.join(pushed_model_uri, rel)))
        fileio.copy(source, os.path.join(pushed_model_uri, rel), overwrite=True)
    for name in (pipeline_names.MODEL_CARD_JSON, pipeline_names.MODEL_CARD_MD, pipeline_names.MODEL_CARD_HTML):
        source = os.path.join(card_dir, names.EXTRA_ASSETS_DIR, name) if card_dir else None
        if source and fileio.exists(source):
            fileio.makedirs(os.path.join(pushed_model_uri, names.EXTRA_ASSETS_DIR))
            fileio.copy(source, os.path.join(pushed_model_uri, names.EXTRA_ASSETS_DIR, name), overwrite=True)


def _edge_push(input_dict: Dict[str, List[types.Artifact]], model_uri: str) -> Optional[EdgePush]:
    """The edge models to push; None without an EdgeEvaluation input (the pipeline has none)."""
    evaluations = input_dict.get(EDGE_EVALUATION_KEY) or []
    if not evaluations:
        return None
    return edge_push(read_edge_evaluation(evaluations[0].uri), model_uri)


def mark_edge_push(pushed_model: types.Artifact, edge: EdgePush) -> None:
    """The pushed_model's edge properties, and why each held-back flavour was not pushed."""
    pushed_model.set_string_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS, ",".join(edge.pushed))
    pushed_model.set_string_custom_property(pipeline_names.PROP_EDGE_HELD_BACK,
                                            json.dumps(edge.held_back, sort_keys=True))
    for flavour, reason in sorted(edge.held_back.items()):
        logging.warning("AtomicPusher: %s TFLite model held back: %s", flavour, reason)
    if edge.pushed:
        logging.info("AtomicPusher: TFLite models %s pushed beside the SavedModel.", ", ".join(edge.pushed))


def artifact_ref(artifact: types.Artifact) -> model_card.ArtifactRef:
    """The card's view of an input artifact: ML Metadata id, URI and custom properties."""
    properties = {key: artifact.get_custom_property(key) for key in artifact.mlmd_artifact.custom_properties}
    return model_card.ArtifactRef(artifact.id or None, artifact.uri, properties)


def _input_ref(input_dict: Dict[str, List[types.Artifact]], key: str) -> Optional[model_card.ArtifactRef]:
    artifacts = input_dict.get(key) or []
    return artifact_ref(artifacts[0]) if artifacts else None


def card_sources(input_dict: Dict[str, List[types.Artifact]], edge: Optional[EdgePush], pipeline_name: str,
                 run_id: Optional[str]) -> model_card.CardSources:
    """What the model card reads: the Pusher's inputs, and the edge models this push carries."""
    models = (input_dict.get(standard_component_specs.MODEL_KEY)
              or input_dict[standard_component_specs.INFRA_BLESSING_KEY])
    return model_card.CardSources(
        pipeline_name=pipeline_name, run_id=run_id, model=artifact_ref(models[0]),
        blessing=_input_ref(input_dict, standard_component_specs.MODEL_BLESSING_KEY)
        or _input_ref(input_dict, standard_component_specs.INFRA_BLESSING_KEY),
        evaluation=_input_ref(input_dict, EVALUATION_KEY), examples=_input_ref(input_dict, EXAMPLES_KEY),
        model_run=_input_ref(input_dict, MODEL_RUN_KEY), edge_evaluation=_input_ref(input_dict, EDGE_EVALUATION_KEY),
        data_validation=_input_ref(input_dict, DATA_VALIDATION_KEY),
        edge_pushed=tuple(edge.pushed) if edge else (), edge_held_back=dict(edge.held_back) if edge else {})


def card_writer(card: Dict[str, Any], base: str) -> ExtraFiles:
    """The card files of a version, once its number and marker are known (push_new_version)."""
    def files(version: str, record: Dict[str, Any]) -> Dict[str, bytes]:
        return model_card.card_files(model_card.with_push(
            card, version, os.path.join(base, version), record[pipeline_names.PUSH_SOURCE_PUSHED_AT],
            record[pipeline_names.PUSH_SOURCE_FINGERPRINT]))
    return files


def record_release(base: str, version: str, base_path: Optional[str]) -> str:
    """Registers the version in the serving dir's release files; PushError when they cannot be written
    (the version stays in place, and a rerun records it)."""
    try:
        return releases.record_push(base, int(version), base_path=base_path or None)
    except (OSError, releases.ReleaseError) as e:
        raise PushError(f"version {version} is in {base} but its release could not be recorded in "
                        f"{releases.state_path(base)}: {type(e).__name__}: {e}; rerun the pipeline to record "
                        "it (the version is reused)") from e


def _model_uri(input_dict: Dict[str, List[types.Artifact]]) -> str:
    models = (input_dict.get(standard_component_specs.MODEL_KEY)
              or input_dict[standard_component_specs.INFRA_BLESSING_KEY])
    return artifact_utils.get_single_instance(models).uri


class ReferenceBlessingCheck:
    """For a TFX Pusher executor (before it in the bases): with a reference_blessing input (the
    ReferenceEvaluator's, pipeline_names.REFERENCE_BLESSING_INPUT), the model is pushed only if that
    blessing says blessed too. TFX's executors, the Vertex one included, ask CheckBlessing before
    they push anything."""

    def CheckBlessing(self, input_dict: Dict[str, List[types.Artifact]]) -> bool:  # noqa: N802 - TFX's name
        if not super().CheckBlessing(input_dict):
            return False
        reference = input_dict.get(REFERENCE_BLESSING_KEY)
        if reference:
            blessing = artifact_utils.get_single_instance(reference)
            if not model_utils.is_model_blessed(blessing):
                logging.info("Model was not blessed on the reference set (%s): not pushed.", blessing.uri)
                return False
        return True


class AtomicPusherExecutor(ReferenceBlessingCheck, pusher_executor.Executor):
    """TFX's Pusher executor; pushes to a local folder are atomic and found again on a rerun."""

    def _card_sources(self, input_dict: Dict[str, List[types.Artifact]], edge: Optional[EdgePush]):
        context = self._context
        return card_sources(input_dict, edge, context.pipeline_info.id if context and context.pipeline_info else "",
                            context.pipeline_run_id if context else None)

    def _card_after_remote_push(self, input_dict: Dict[str, List[types.Artifact]],
                                output_dict: Dict[str, List[types.Artifact]]) -> None:
        """After TFX's push to an object store (no atomic rename there): the card into the version
        and the PushedModel's copy, written once the model is."""
        pushed_model = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not pushed_model.get_int_custom_property(pipeline_names.PROP_PUSHED):
            return
        destination = pushed_model.get_string_custom_property(pipeline_names.PROP_PUSHED_DESTINATION)
        card = model_card.with_push(
            model_card.collect(self._card_sources(input_dict, None)),
            pushed_model.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION), destination,
            datetime.datetime.now(datetime.timezone.utc).isoformat(),
            fingerprint(saved_model_sources(self.GetModelPath(input_dict))[1]))
        for folder in (destination, pushed_model.uri):
            model_card.write_card_files(card, folder)

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        """Pushes the model if blessed; sets pushed, pushed_destination and pushed_version."""
        base = local_base_directory(exec_properties)
        if base is None:
            if input_dict.get(EDGE_EVALUATION_KEY):
                logging.warning("AtomicPusher: TFLite models are pushed to local serving folders only; for "
                                "this destination they stay in the Model artifact's %s folder.",
                                names.EDGE_MODEL_SUBDIR)
            super().Do(input_dict, output_dict, exec_properties)
            self._card_after_remote_push(input_dict, output_dict)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed_model = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed_model)
            return
        model_path = self.GetModelPath(input_dict)
        edge = _edge_push(input_dict, _model_uri(input_dict))
        card = model_card.collect(self._card_sources(input_dict, edge))
        version = push_to_directory(model_path, base, _model_uri(input_dict), edge, card_writer(card, base))
        release = record_release(base, version, exec_properties.get(SERVING_BASE_PATH_KEY))
        logging.info("AtomicPusher: release: %s (%s).", release, releases.config_path(base))
        archive_model(model_path, pushed_model.uri, edge, card_dir=os.path.join(base, version))
        self._MarkPushed(pushed_model, pushed_destination=os.path.join(base, version),
                         pushed_version=version)
        pushed_model.set_string_custom_property(pipeline_names.PROP_RELEASE, release)
        if edge is not None:
            mark_edge_push(pushed_model, edge)
        logging.info("Model pushed to %s.", pushed_model.uri)
