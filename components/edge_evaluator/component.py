"""EdgeEvaluator: the component, its spec, and the EdgeEvaluation artifact it writes."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from common import pipeline_names
from components.edge_evaluator import executor, gate
from trainer_module import image_format


class EdgeEvaluation(types.Artifact):
    """pipeline_names.EDGE_EVALUATION_FILE (the SavedModel and each TFLite flavour scored on the same eval
    images, and the edge gate per flavour) and custom properties summarising it."""
    # The KFP v2 compiler requires "<module>.<Class>", and its containers import the class by it
    # (components/__init__.py resolves it).
    TYPE_NAME = "components.EdgeEvaluation"


class EdgeEvaluatorSpec(ComponentSpec):
    """The eval examples, the Transform graph and the trained model in; the evaluation out."""
    PARAMETERS = {
        executor.MAX_DROPS_KEY: ExecutionParameter(type=str),
        executor.MAX_IMAGE_PIXELS_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        # Only recorded (the Pusher checks the blessing itself); it also orders this after the Evaluator.
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {pipeline_names.EDGE_EVALUATION_OUTPUT: ChannelParameter(type=EdgeEvaluation)}


class EdgeEvaluator(base_component.BaseComponent):
    """Scores the Trainer's SavedModel and its TFLite models (Format-TFLite) on the eval split by the
    same metrics, with size and CPU latency, and gates each TFLite flavour: it passes when its
    accuracy is at most max_drop below the SavedModel's on the same images. The AtomicPusher
    pushes the flavours that passed beside a blessed SavedModel.

    Node id: pipeline_names.EDGE_EVALUATOR_NODE.
    """

    SPEC_CLASS = EdgeEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 model: types.BaseChannel, float16_max_drop: float, int8_max_drop: float,
                 blessing: Optional[types.BaseChannel] = None,
                 max_image_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS):
        gate.parse_max_drops(gate.max_drops_json(float16_max_drop, int8_max_drop))  # fails at build time
        super().__init__(spec=EdgeEvaluatorSpec(
            examples=examples, transform_graph=transform_graph, model=model, blessing=blessing,
            max_drops=gate.max_drops_json(float16_max_drop, int8_max_drop),
            max_image_pixels=int(max_image_pixels),
            edge_evaluation=types.Channel(type=EdgeEvaluation)))
        self.with_id(pipeline_names.EDGE_EVALUATOR_NODE)
