"""ImageExampleGen's driver: fingerprints the input files before TFX looks up its cache.

A component without upstream inputs is cached on its parameters alone, so a changed image under
the same `input_base` would be served from the cache. As TFX's own file-based ExampleGens do, the
driver runs before the cache lookup and adds the input's fingerprint to the execution
properties: changed data runs the component again, unchanged data is CACHED, whoever built the
pipeline and whatever the path's form (a folder, `file://`, `gs://`: it lists through tf.io.gfile).
"""
import copy
from typing import Any, Dict

from absl import logging
from tfx.dsl.components.base import base_driver
from tfx.orchestration import data_types_utils
from tfx.orchestration.portable import base_driver as portable_base_driver
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2

from components.image_example_gen import image_files

INPUT_BASE_KEY = "input_base"
INPUT_FINGERPRINT_KEY = "input_fingerprint"


def resolve_exec_properties(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The execution properties with the fingerprint of the files under input_base."""
    resolved = dict(exec_properties)
    resolved[INPUT_FINGERPRINT_KEY] = image_files.fingerprint_tree(exec_properties[INPUT_BASE_KEY])
    return resolved


class Driver(base_driver.BaseDriver, portable_base_driver.BaseDriver):
    """Adds `input_fingerprint` (paths, sizes, modification times) to the execution properties."""

    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        portable_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        exec_properties = resolve_exec_properties(execution_info.exec_properties)
        logging.info("ImageExampleGen driver: %s fingerprint %s", exec_properties[INPUT_BASE_KEY],
                     exec_properties[INPUT_FINGERPRINT_KEY][:16])
        result = driver_output_pb2.DriverOutput()
        for key, value in exec_properties.items():
            if value is not None:
                data_types_utils.set_metadata_value(result.exec_properties[key], value)
        # The output artifacts are left as the launcher prepared them.
        for key, artifacts in execution_info.output_dict.items():
            result.output_artifacts[key].artifacts.extend(copy.deepcopy(a.mlmd_artifact) for a in artifacts)
        return result
