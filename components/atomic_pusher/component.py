"""AtomicPusher: TFX's Pusher component with the atomic executor, as TFX's extensions define theirs."""
from typing import Any, Dict, Optional, Union

from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.proto import pusher_pb2

from components.atomic_pusher import executor
from trainer_module import names


class AtomicPusher(pusher_component.Pusher):
    """TFX's Pusher (PusherSpec, the `pushed_model` output and its properties unchanged) whose
    pushes to a local serving folder are atomic and not duplicated by a rerun (executor.py).

    Its node id defaults to `Pusher`, the id the run readers look up (names.PUSHER_NODE).
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.AtomicPusherExecutor)

    def __init__(self, model: Optional[types.BaseChannel] = None,
                 model_blessing: Optional[types.BaseChannel] = None,
                 infra_blessing: Optional[types.BaseChannel] = None,
                 push_destination: Optional[Union[pusher_pb2.PushDestination,
                                                   data_types.RuntimeParameter]] = None,
                 custom_config: Optional[Dict[str, Any]] = None):
        # TFX's Pusher checks this only when its own executor is in use.
        if push_destination is None:
            raise ValueError("AtomicPusher needs a push_destination.")
        super().__init__(model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
                         push_destination=push_destination, custom_config=custom_config)
        self.with_id(names.PUSHER_NODE)
