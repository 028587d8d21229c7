"""The schema a pipeline imports: the checked-in contract (schema.pbtxt) with the configuration's
class names and pixel budget written in, so a user with other classes is not held to the Intel set.

Rendered when the pipeline is built and handed to CuratedSchemaGen as text: TFX's cache and ML
Metadata then key on the schema's content (ImportSchemaGen keys on a file path, so an edited file
would be served stale from the cache), and the Kubeflow spec carries it without a file on gs://.
No TensorFlow: only the tensorflow_metadata protos.
"""
import os
from typing import Sequence

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components.curated_schema_gen import to_text  # noqa: F401 - the text form, defined with its version
from trainer_module import names

TEMPLATE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.pbtxt")
# The configured parts: the class set (class_name's domain, label's range) and the pixel budget.
CLASS_FEATURES = (names.CLASS_NAME_KEY, names.LABEL_KEY)
SIZE_FEATURES = (names.HEIGHT_KEY, names.WIDTH_KEY)


def read_schema(path: str = TEMPLATE_FILE) -> schema_pb2.Schema:
    """A text-format schema file (comments allowed)."""
    with open(path) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def header_of(path: str = TEMPLATE_FILE) -> str:
    """The leading comment block of a schema file (kept when the update command rewrites it)."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line)
    return "".join(lines)


def feature(schema: schema_pb2.Schema, name: str) -> schema_pb2.Feature:
    """The schema's feature `name` (KeyError when the schema has none)."""
    for candidate in schema.feature:
        if candidate.name == name:
            return candidate
    raise KeyError(f"the schema has no feature {name!r}")


def configure(schema: schema_pb2.Schema, class_names: Sequence[str],
              max_image_pixels: int) -> schema_pb2.Schema:
    """A copy of `schema` with the class set and the pixel budget of this configuration."""
    configured = schema_pb2.Schema()
    configured.CopyFrom(schema)
    domain = feature(configured, names.CLASS_NAME_KEY).string_domain
    del domain.value[:]
    domain.value.extend(class_names)
    label = feature(configured, names.LABEL_KEY).int_domain
    label.min, label.max = 0, len(class_names) - 1
    for name in SIZE_FEATURES:
        size = feature(configured, name).int_domain
        # One side can be as long as the budget when the other is 1 pixel: width x height is
        # checked at ingestion (too_many_pixels); the schema holds each side to the bound it implies.
        # (is_categorical stays as written: see README "Data validation" on the size comparator.)
        size.min, size.max = 1, int(max_image_pixels)
    return configured


def render_schema(class_names: Sequence[str], max_image_pixels: int, template: str = TEMPLATE_FILE) -> str:
    """The schema text this pipeline imports (the template configured for its classes and budget)."""
    return to_text(configure(read_schema(template), class_names, max_image_pixels))


