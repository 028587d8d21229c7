"""VertexRegistryPusher: TFX's Pusher interface, pushing to the Vertex AI Model Registry (executor.py)."""
from typing import Any, Dict, Optional

from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.utils import json_utils

from common import pipeline_names
from components.atomic_pusher.component import AtomicPusherSpec
from components.vertex_pusher import executor


class VertexRegistryPusher(pusher_component.Pusher):
    """Pushes a blessed model as a new version of one Vertex AI Model (custom_config: TFX's Vertex
    keys, the serving args and executor.REGISTRY_ARGS_KEY), with the same optional inputs as the
    AtomicPusher for its model card and the reference set's blessing (required too when given).
    Its node id is `Pusher` (pipeline_names.PUSHER_NODE)."""

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.VertexRegistryPusherExecutor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel, custom_config: Dict[str, Any],
                 edge_evaluation: Optional[types.BaseChannel] = None,
                 evaluation: Optional[types.BaseChannel] = None,
                 examples: Optional[types.BaseChannel] = None,
                 model_run: Optional[types.BaseChannel] = None,
                 data_validation: Optional[types.BaseChannel] = None,
                 reference_blessing: Optional[types.BaseChannel] = None):
        executor.RegistrySettings.from_custom_config(custom_config)  # a bad config fails here, not on the cluster
        spec = AtomicPusherSpec(
            model=model, model_blessing=model_blessing, custom_config=json_utils.dumps(custom_config),
            edge_evaluation=edge_evaluation, evaluation=evaluation, examples=examples, model_run=model_run,
            data_validation=data_validation, reference_blessing=reference_blessing,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
        self.with_id(pipeline_names.PUSHER_NODE)
