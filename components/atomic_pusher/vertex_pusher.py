"""TFX's Vertex AI endpoint Pusher (google_cloud_ai_platform) with an optional reference_blessing
input: with a fixed reference set, a model is deployed only if the ReferenceEvaluator blessed it
too. TFX's component takes one model_blessing; this adds the second as AtomicPusher does (the same
check, executor.ReferenceBlessingCheck). Imported only when the pipeline deploys to an endpoint and
has a reference set: the extension's executor loads the Vertex AI client libraries.
"""
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.extensions.google_cloud_ai_platform.pusher import component as vertex_component
from tfx.extensions.google_cloud_ai_platform.pusher import executor as vertex_executor
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from common import pipeline_names
from components.atomic_pusher import executor


class VertexPusherExecutor(executor.ReferenceBlessingCheck, vertex_executor.Executor):
    """TFX's Vertex AI Pusher executor, which also requires the reference set's blessing."""


class VertexPusherSpec(standard_component_specs.PusherSpec):
    """TFX's PusherSpec and the reference set's blessing."""
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        executor.REFERENCE_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }


class VertexPusher(vertex_component.Pusher):
    """TFX's Vertex AI endpoint Pusher with the reference_blessing input; node id `Pusher`."""

    SPEC_CLASS = VertexPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexPusherExecutor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 reference_blessing: types.BaseChannel, custom_config: Optional[Dict[str, Any]] = None):
        # TFX's Pusher.__init__ builds a PusherSpec; this builds the same with the reference input.
        spec = VertexPusherSpec(
            model=model, model_blessing=model_blessing, reference_blessing=reference_blessing,
            custom_config=json_utils.dumps(custom_config),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
        self.with_id(pipeline_names.PUSHER_NODE)
