"""ImageExampleGen: the component (its spec, driver and executor), as TFX structures its own."""
import json
from typing import List

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from common import pipeline_names
from components.image_example_gen import driver, executor
from trainer_module import image_format, names


class ImageExampleGenSpec(ComponentSpec):
    """Parameters and output of ImageExampleGen."""
    PARAMETERS = {
        driver.INPUT_BASE_KEY: ExecutionParameter(type=str),
        driver.CLASS_NAMES_KEY: ExecutionParameter(type=str),
        driver.EVAL_FRACTION_KEY: ExecutionParameter(type=float),
        # The pixel budget: a file whose header declares more pixels is skipped (too_many_pixels).
        names.MAX_IMAGE_PIXELS_KEY: ExecutionParameter(type=int),
        # A train and an eval image whose perceptual hashes differ in at most this many bits are
        # near duplicates (optional: a spec compiled before it existed still runs).
        driver.NEAR_DUPLICATE_MAX_HAMMING_KEY: ExecutionParameter(type=int, optional=True),
        # Set by the driver before the cache lookup (never by the caller).
        driver.INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {pipeline_names.EXAMPLES_OUTPUT: ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests `<input_base>/<split>/<class>/<image>` (or `<input_base>/<class>/<image>`).

    Why a custom component: TFX's ImportExampleGen reads TFRecords and FileBasedExampleGen needs
    one PTransform per input pattern; neither reads class folders, checks each image or reports
    skips. The driver fingerprints the input so TFX's cache sees data changes.
    """

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.Driver

    def __init__(self, input_base: str, class_names: List[str] = (), eval_fraction: float = 0.2,
                 max_image_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS,
                 near_duplicate_max_hamming: int = executor.DEFAULT_NEAR_DUPLICATE_MAX_HAMMING):
        super().__init__(spec=ImageExampleGenSpec(
            input_base=input_base, class_names=json.dumps(list(class_names)),
            eval_fraction=float(eval_fraction), max_image_pixels=int(max_image_pixels),
            near_duplicate_max_hamming=int(near_duplicate_max_hamming),
            examples=types.Channel(type=standard_artifacts.Examples)))
