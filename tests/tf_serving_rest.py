"""Test helper: TF Serving's REST `:predict` request body, mapped onto a serving signature's input
tensors.

Lets a test take exactly what a TF Serving client sends
(tensorflow.org/tfx/serving/api_rest, "Predict API") and call the loaded signature with it.
"""
import base64
import json
from typing import Any, Dict, Union

import tensorflow as tf


def _decode_b64(value: Any) -> Any:
    """{"b64": s} -> bytes, recursively (TF Serving's JSON encoding of binary strings)."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (TypeError, ValueError) as e:
                raise ValueError(f'invalid base64 in a "b64" value: {e}') from e
        return {k: _decode_b64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _is_named(value: Any) -> bool:
    """An object of named inputs, as opposed to a value (a {"b64": ...} object is a value)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def _tensor(values: Any, spec: tf.TensorSpec, name: str) -> tf.Tensor:
    if spec.dtype == tf.string:
        # JSON strings are UTF-8 text; binary data must come as {"b64": ...}.
        encode = lambda v: v.encode("utf-8") if isinstance(v, str) else v  # noqa: E731
        values = tf.nest.map_structure(encode, values)
    try:
        tensor = tf.constant(values, dtype=spec.dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"input {name!r}: cannot make a {spec.dtype.name} tensor: {e}") from e
    if not spec.shape.is_compatible_with(tensor.shape):
        raise ValueError(f"input {name!r}: shape {tensor.shape} does not match {spec.shape}")
    return tensor


def _instances_to_columns(instances: Any, specs: Dict[str, tf.TensorSpec]) -> Dict[str, list]:
    """Row format: one element per example, stacked into one column per input."""
    if not isinstance(instances, list) or not instances:
        raise ValueError('"instances" must be a non-empty list')
    if len(specs) == 1 and not _is_named(instances[0]):
        return {next(iter(specs)): [_decode_b64(i) for i in instances]}
    if not all(_is_named(i) for i in instances):
        raise ValueError(f"each instance must be an object with the inputs {sorted(specs)}")
    names = sorted(instances[0])
    for n, instance in enumerate(instances):
        if sorted(instance) != names:
            raise ValueError(f"instances[{n}] has inputs {sorted(instance)}, instances[0] {names}")
    return {name: [_decode_b64(i[name]) for i in instances] for name in names}


def rest_request_to_inputs(body: Union[str, bytes, Dict[str, Any]], signature) -> Dict[str, tf.Tensor]:
    """Maps a TF Serving REST `:predict` request body onto `signature`'s input tensors.

    Follows TF Serving's REST API (tensorflow.org/tfx/serving/api_rest, "Predict API"):
      * row format `{"instances": [...]}`: one element per example, stacked along a new batch
        dimension. An element is an object `{input name: value}` naming every input or, when
        the signature has exactly one input, may be the bare value, e.g.
        `{"instances": [{"b64": "<base64 JPEG>"}, ...]}` for our `image_bytes`.
      * columnar format `{"inputs": {input name: batched values}}`, or `{"inputs": values}` for
        a single-input signature.
      * `{"b64": "<standard base64>"}` is binary data for a DT_STRING tensor; plain JSON strings
        are taken as UTF-8 text. (A lone {"b64": ...} is a value, never an input named "b64".)
      * `signature_name` may be present; picking the signature is the caller's job.
    Returns {input name: tensor} to call the signature with (`signature(**inputs)`); raises
    ValueError where TF Serving would answer 400 Bad Request.
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise ValueError('the request body must be a JSON object with "instances" or "inputs"')
    specs = dict(signature.structured_input_signature[1])
    if "instances" in body:
        columns = _instances_to_columns(body["instances"], specs)
    elif _is_named(body["inputs"]):
        columns = {k: _decode_b64(v) for k, v in body["inputs"].items()}
    else:
        columns = {next(iter(specs)) if len(specs) == 1 else None: _decode_b64(body["inputs"])}
    missing = sorted(set(specs) - set(columns))
    unknown = sorted(str(k) for k in set(columns) - set(specs))
    if missing or unknown:
        raise ValueError(f"inputs missing {missing}, unknown {unknown}; the signature takes {sorted(specs)}")
    return {name: _tensor(values, specs[name], name) for name, values in columns.items()}
