"""ImageExampleGen's driver: lists and fingerprints the input files before TFX looks up its cache.

A component without upstream inputs is cached on its parameters alone, so a changed image under
the same `input_base` would be served from the cache. As TFX's own file-based ExampleGens do, the
driver runs before the cache lookup and adds the input's fingerprint to the execution
properties: changed data runs the component again, unchanged data is CACHED, whoever built the
pipeline and whatever the path's form (a folder, `file://`, `gs://`).

The listing the fingerprint was made from is kept in this process (LISTINGS, keyed by root and
fingerprint): when the executor runs in the same process (LocalDagRunner) it ingests exactly the
files that were fingerprinted and the data tree is listed once per run; elsewhere it lists again.
"""
import collections
import copy
import json
from typing import Any, Dict, Tuple

from absl import logging
from tfx.dsl.components.base import base_driver
from tfx.orchestration import data_types_utils
from tfx.orchestration.portable import base_driver as portable_base_driver, data_types
from tfx.proto.orchestration import driver_output_pb2

from components.image_example_gen import image_files

INPUT_BASE_KEY = "input_base"
CLASS_NAMES_KEY = "class_names"  # JSON list; "[]" derives the classes from the train folders
EVAL_FRACTION_KEY = "eval_fraction"
NEAR_DUPLICATE_MAX_HAMMING_KEY = "near_duplicate_max_hamming"  # bits of the 64-bit perceptual hash
INPUT_FINGERPRINT_KEY = "input_fingerprint"
# {(input base, fingerprint): listing}: the driver's listings, for an executor in this process.
# At most a few entries: a run takes its own out (take_listing), a CACHED one leaves one behind.
LISTINGS: "collections.OrderedDict[Tuple[str, str], image_files.DatasetListing]" = collections.OrderedDict()
_KEEP_LISTINGS = 4


def list_input(exec_properties: Dict[str, Any]) -> image_files.DatasetListing:
    """The listing of input_base under the component's parameters."""
    return image_files.list_image_files(exec_properties[INPUT_BASE_KEY],
                                        json.loads(exec_properties[CLASS_NAMES_KEY]) or None,
                                        exec_properties[EVAL_FRACTION_KEY])


def resolve_exec_properties(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The execution properties with the fingerprint of the files under input_base."""
    listing = list_input(exec_properties)
    fingerprint = listing.fingerprint()
    LISTINGS[(listing.root, fingerprint)] = listing
    while len(LISTINGS) > _KEEP_LISTINGS:
        LISTINGS.popitem(last=False)
    return {**exec_properties, INPUT_FINGERPRINT_KEY: fingerprint}


def take_listing(exec_properties: Dict[str, Any]) -> image_files.DatasetListing:
    """The listing the driver fingerprinted in this process, else a new one (another process)."""
    key = (exec_properties[INPUT_BASE_KEY], exec_properties.get(INPUT_FINGERPRINT_KEY))
    listing = LISTINGS.pop(key, None)
    return listing if listing is not None else list_input(exec_properties)


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
