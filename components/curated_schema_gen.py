"""CuratedSchemaGen: imports the curated schema (pipeline/schema/) as the run's Schema artifact.

TFX's ImportSchemaGen does the same from a file path, and that path is all its cache key holds:
after an edit of the file a rerun would be served the old schema from the cache, and on Vertex AI
the file would have to be copied to gs:// before compiling. Here the schema's text (rendered from
the checked-in schema.pbtxt and the configuration when the pipeline is built) is the execution
property: the cache keys on the content, ML Metadata records it, and the compiled spec carries it.
The artifact is what SchemaGen and ImportSchemaGen write (one `schema.pbtxt`), so every consumer
reads it unchanged, plus the schema's version as a custom property.
"""
import hashlib
import os
from typing import Any, Dict, List

from absl import logging
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from common import pipeline_names

SCHEMA_TEXT_KEY = "schema_text"


def to_text(schema: schema_pb2.Schema) -> str:
    """The canonical text of a schema: what the checked-in template's body is written as, and what
    is hashed for its version."""
    return text_format.MessageToString(schema)


def schema_version(text: str) -> str:
    """The version of a schema: the first 12 hex digits of the sha256 of its canonical text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class Executor(base_executor.BaseExecutor):
    """Writes the schema text as the Schema artifact's schema.pbtxt, with its version."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        text = exec_properties[SCHEMA_TEXT_KEY]
        schema = text_format.Parse(text, schema_pb2.Schema())  # a malformed schema fails here
        artifact = artifact_utils.get_single_instance(output_dict[pipeline_names.SCHEMA_OUTPUT])
        io_utils.write_pbtxt_file(os.path.join(artifact.uri, schema_gen_executor.DEFAULT_FILE_NAME), schema)
        version = schema_version(to_text(schema))
        artifact.set_string_custom_property(pipeline_names.PROP_SCHEMA_VERSION, version)
        logging.info("CuratedSchemaGen: schema %s (%d features) written to %s", version,
                     len(schema.feature), artifact.uri)


class CuratedSchemaGenSpec(ComponentSpec):
    """The schema text in, the Schema artifact out."""
    PARAMETERS = {SCHEMA_TEXT_KEY: ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {pipeline_names.SCHEMA_OUTPUT: ChannelParameter(type=standard_artifacts.Schema)}


class CuratedSchemaGen(base_component.BaseComponent):
    """The curated schema of this pipeline (pipeline.schema.curated.render_schema) as an artifact."""

    SPEC_CLASS = CuratedSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, schema_text: str):
        super().__init__(spec=CuratedSchemaGenSpec(
            schema_text=schema_text, schema=types.Channel(type=standard_artifacts.Schema)))
