"""The TFLite model file of this project, written and read in one place: the metadata every
exported model carries (its labels and input spec, packed as associated files) and reading it back.

The layout is LiteRT's model metadata (schema third_party/tflite_metadata/metadata_schema.fbs):
a ModelMetadata flatbuffer (identifier M001) in a model buffer named TFLITE_METADATA, and the
associated files appended to the model as a zip archive (a .tflite with metadata is also a zip).
It is what tflite-support's MetadataPopulator writes and its MetadataDisplayer, the Task Library
and Android Studio's ML binding read; written here in pure Python, because tflite-support's own
Python module loads compiled extensions that need libusb-1.0, which a new machine lacks
(third_party/tflite_metadata/README.md).
"""
import io
import json
import struct
import zipfile
from typing import Dict, Mapping, Sequence, Tuple

import flatbuffers
from tensorflow.lite.python import schema_py_generated as _model_fb

from third_party.tflite_metadata import metadata_schema_py_generated as _metadata_fb
from trainer_module import names

MODEL_IDENTIFIER = b"TFL3"  # bytes 4-8 of every TFLite model
METADATA_IDENTIFIER = b"M001"  # bytes 4-8 of the metadata flatbuffer
METADATA_BUFFER_NAME = "TFLITE_METADATA"  # the model metadata entry LiteRT's readers look up
# The fields written below are all in schema version 1.0.0 (the schema's history lists what later
# versions added); readers older than this version would skip fields they do not know.
MIN_PARSER_VERSION = "1.0.0"
_UINT8_RANGE, _PROBABILITY_RANGE = (0.0, 255.0), (0.0, 1.0)
INPUT_TENSOR, OUTPUT_TENSOR = "image", "probabilities"  # the tensors' names in the metadata


class TFLiteFormatError(ValueError):
    """The bytes are not a TFLite model, or lack the metadata this project writes."""


def with_metadata(model_bytes: bytes, name: str, description: str, input_description: str,
                  output_description: str, labels: Sequence[str], input_spec: Mapping,
                  input_spec_description: str) -> bytes:
    """An image classifier's model with its metadata: the input (RGB image, [0, 255], not
    normalised) with the input spec file, the output (class probabilities) with the labels file.

    The stats of each tensor follow its type, as LiteRT's image-classifier writer sets them:
    a uint8 tensor spans [0, 255], a float output [0, 1].
    """
    input_type, output_type = tensor_types(model_bytes)
    image = _tensor(INPUT_TENSOR, input_description, _UINT8_RANGE)
    image.content = _content(_metadata_fb.ContentProperties.ImageProperties, _image_properties())
    image.processUnits = [_normalization(mean=0.0, std=1.0)]
    image.associatedFiles = [_associated_file(names.TFLITE_INPUT_SPEC_FILE, input_spec_description,
                                              _metadata_fb.AssociatedFileType.DESCRIPTIONS)]
    uint8_output = output_type == _model_fb.TensorType.UINT8
    probabilities = _tensor(OUTPUT_TENSOR, output_description,
                            _UINT8_RANGE if uint8_output else _PROBABILITY_RANGE)
    probabilities.content = _content(_metadata_fb.ContentProperties.FeatureProperties,
                                     _metadata_fb.FeaturePropertiesT())
    probabilities.associatedFiles = [_associated_file(
        names.TFLITE_LABELS_FILE, "Labels for categories that the model can recognize.",
        _metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS)]
    if input_type != _model_fb.TensorType.UINT8:
        raise TFLiteFormatError(f"the model's input is tensor type {input_type}, not uint8 pixels")

    subgraph = _metadata_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [probabilities]
    metadata = _metadata_fb.ModelMetadataT()
    metadata.name, metadata.description = name, description
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), METADATA_IDENTIFIER)

    files = {names.TFLITE_LABELS_FILE: "".join(f"{label}\n" for label in labels).encode("utf-8"),
             names.TFLITE_INPUT_SPEC_FILE: json.dumps(dict(input_spec), indent=1).encode("utf-8")}
    return _append_files(_with_metadata_buffer(model_bytes, bytes(builder.Output())), files)


def read_metadata(content: bytes, where: str = "the model") -> Tuple[Tuple[str, ...], dict]:
    """(labels in label order, input spec dict) of a model with_metadata wrote.

    Raises TFLiteFormatError, naming `where`, when it is not a TFLite model or lacks that metadata.
    """
    if content[4:8] != MODEL_IDENTIFIER:
        raise TFLiteFormatError(f"{where} is not a TFLite model (no {MODEL_IDENTIFIER.decode()} identifier)")
    wanted = (names.TFLITE_LABELS_FILE, names.TFLITE_INPUT_SPEC_FILE)
    try:
        metadata = model_metadata(content)
        recorded = {f.name.decode() for tensor in _tensors(metadata) for f in tensor.associatedFiles or ()}
        packed = packed_files(content)
        if not all(name in packed and name in recorded for name in wanted):
            raise TFLiteFormatError(f"its metadata packs {sorted(packed)} and records {sorted(recorded)}, "
                                    f"not {list(wanted)}")
        labels = packed[names.TFLITE_LABELS_FILE].decode("utf-8").splitlines()
        spec = json.loads(packed[names.TFLITE_INPUT_SPEC_FILE])
    except (ValueError, IndexError, TypeError, AttributeError, struct.error, zipfile.BadZipFile) as e:
        # what flatbuffers raises reading past the end of a damaged or truncated file
        raise TFLiteFormatError(f"{where} has no readable labels and input spec in its TFLite metadata "
                                f"(export it with trainer_module.tflite_export): {e}") from e
    return tuple(label for label in labels if label), spec


def model_metadata(content: bytes) -> _metadata_fb.ModelMetadataT:
    """The model's ModelMetadata (object API); TFLiteFormatError if it has none."""
    model = _model_fb.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode("utf-8") == METADATA_BUFFER_NAME:
            buffer = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            if buffer[4:8] != METADATA_IDENTIFIER:
                raise TFLiteFormatError(f"its {METADATA_BUFFER_NAME} buffer is not metadata "
                                        f"(no {METADATA_IDENTIFIER.decode()} identifier)")
            return _metadata_fb.ModelMetadataT.InitFromObj(_metadata_fb.ModelMetadata.GetRootAs(buffer, 0))
    raise TFLiteFormatError(f"it has no {METADATA_BUFFER_NAME} entry")


def packed_files(content: bytes) -> Dict[str, bytes]:
    """{name: bytes} of the files appended to the model as a zip (empty when there are none)."""
    stream = io.BytesIO(content)
    if not zipfile.is_zipfile(stream):
        return {}
    with zipfile.ZipFile(stream) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def tensor_types(model_bytes: bytes) -> Tuple[int, int]:
    """(input, output) TensorType of the first subgraph's first input and output."""
    graph = _model_fb.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    return graph.Tensors(graph.Inputs(0)).Type(), graph.Tensors(graph.Outputs(0)).Type()


def _with_metadata_buffer(model_bytes: bytes, metadata: bytes) -> bytes:
    """The model re-packed with `metadata` as its METADATA_BUFFER_NAME buffer (replacing one)."""
    model = _model_fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    buffer = _model_fb.BufferT()
    buffer.data = metadata
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    existing = [m for m in model.metadata if m.name.decode("utf-8") == METADATA_BUFFER_NAME]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = _model_fb.MetadataT()
        entry.name, entry.buffer = METADATA_BUFFER_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), MODEL_IDENTIFIER)
    return bytes(builder.Output())


def _append_files(model_bytes: bytes, files: Mapping[str, bytes]) -> bytes:
    """The model followed by a zip of `files` (stored, not compressed: readers map them in place)."""
    stream = io.BytesIO()
    stream.write(model_bytes)
    with zipfile.ZipFile(stream, "a") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return stream.getvalue()


def _tensors(metadata: _metadata_fb.ModelMetadataT):
    for graph in metadata.subgraphMetadata or ():
        yield from graph.inputTensorMetadata or ()
        yield from graph.outputTensorMetadata or ()


def _tensor(name: str, description: str, value_range: Tuple[float, float]) -> _metadata_fb.TensorMetadataT:
    tensor = _metadata_fb.TensorMetadataT()
    tensor.name, tensor.description = name, description
    tensor.stats = _metadata_fb.StatsT()
    tensor.stats.min, tensor.stats.max = [value_range[0]], [value_range[1]]
    return tensor


def _content(kind: int, properties) -> _metadata_fb.ContentT:
    content = _metadata_fb.ContentT()
    content.contentPropertiesType, content.contentProperties = kind, properties
    return content


def _image_properties() -> _metadata_fb.ImagePropertiesT:
    properties = _metadata_fb.ImagePropertiesT()
    properties.colorSpace = _metadata_fb.ColorSpaceType.RGB
    return properties


def _normalization(mean: float, std: float) -> _metadata_fb.ProcessUnitT:
    options = _metadata_fb.NormalizationOptionsT()
    options.mean, options.std = [mean], [std]
    unit = _metadata_fb.ProcessUnitT()
    unit.optionsType, unit.options = _metadata_fb.ProcessUnitOptions.NormalizationOptions, options
    return unit


def _associated_file(name: str, description: str, kind: int) -> _metadata_fb.AssociatedFileT:
    associated = _metadata_fb.AssociatedFileT()
    associated.name, associated.description, associated.type = name, description, kind
    return associated
