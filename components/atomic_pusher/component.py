"""AtomicPusher: TFX's Pusher component with the atomic executor, an optional edge input and an
optional reference-set blessing."""
from typing import Any, Dict, Optional, Union

from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from common import pipeline_names
from components.atomic_pusher import executor
from components.data_gate.component import DataValidationResult
from components.edge_evaluator.component import EdgeEvaluation


class AtomicPusherSpec(standard_component_specs.PusherSpec):
    """TFX's PusherSpec and the EdgeEvaluator's verdict (which TFLite models go beside the SavedModel),
    the artifacts the model card reads, and the base path models.config names."""
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        executor.EDGE_EVALUATION_KEY: ChannelParameter(type=EdgeEvaluation, optional=True),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        executor.DATA_VALIDATION_KEY: ChannelParameter(type=DataValidationResult, optional=True),
        executor.REFERENCE_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    PARAMETERS = {
        **standard_component_specs.PusherSpec.PARAMETERS,
        executor.SERVING_BASE_PATH_KEY: ExecutionParameter(type=str, optional=True),
    }


class AtomicPusher(pusher_component.Pusher):
    """TFX's Pusher (its inputs, parameters, the `pushed_model` output and its properties unchanged)
    whose pushes to a local serving folder are atomic and not duplicated by a rerun (executor.py).

    edge_evaluation (optional, the EdgeEvaluator's output): the TFLite flavours that passed the edge
    gate are pushed with their labels into the same version's tflite/ folder, in the same atomic
    write. evaluation, examples, model_run, data_validation (optional: the Evaluator's, ImageExampleGen's,
    the Trainer's and the DataGate's outputs): what the version's model card shows. serving_base_path:
    the base_path of the model in the serving dir's models.config (empty: /models/<serving dir name>,
    TF Serving's docker layout). reference_blessing (optional, the ReferenceEvaluator's
    blessing): the model must be blessed on the fixed reference set too. Its node id defaults to
    `Pusher`, the id the run readers look up (pipeline_names.PUSHER_NODE).
    """

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.AtomicPusherExecutor)

    def __init__(self, model: Optional[types.BaseChannel] = None,
                 model_blessing: Optional[types.BaseChannel] = None,
                 infra_blessing: Optional[types.BaseChannel] = None,
                 push_destination: Optional[Union[pusher_pb2.PushDestination,
                                                   data_types.RuntimeParameter]] = None,
                 custom_config: Optional[Dict[str, Any]] = None,
                 edge_evaluation: Optional[types.BaseChannel] = None,
                 evaluation: Optional[types.BaseChannel] = None,
                 examples: Optional[types.BaseChannel] = None,
                 model_run: Optional[types.BaseChannel] = None,
                 data_validation: Optional[types.BaseChannel] = None,
                 reference_blessing: Optional[types.BaseChannel] = None,
                 serving_base_path: str = ""):
        # TFX's Pusher checks this only when its own executor is in use.
        if push_destination is None:
            raise ValueError("AtomicPusher needs a push_destination.")
        if model is None and infra_blessing is None:
            raise ValueError("AtomicPusher needs a model or an infra_blessing channel.")
        # TFX's Pusher.__init__ builds a PusherSpec; this builds the same with the edge input.
        spec = AtomicPusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            push_destination=push_destination, custom_config=json_utils.dumps(custom_config),
            edge_evaluation=edge_evaluation, evaluation=evaluation, examples=examples, model_run=model_run,
            data_validation=data_validation, reference_blessing=reference_blessing,
            serving_base_path=serving_base_path,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
        self.with_id(pipeline_names.PUSHER_NODE)
