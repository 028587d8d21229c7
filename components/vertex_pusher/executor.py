"""VertexRegistryPusher's executor: a blessed model becomes a version of one Vertex AI Model.

TFX's Vertex Pusher (tfx.extensions.google_cloud_ai_platform) uploads every push as a new Model
named v<unix time> and deploys it with all the traffic: nothing ties the pushes together, and
there is no alias, canary or rollback. This executor:
  1. copies the SavedModel into the PushedModel artifact's folder (gs://), as TFX's does, and writes
     the model card (common/model_card.py) into its assets.extra/ before anything is uploaded, so
     the version's files hold their card; push.version is null on the card (the registry assigns
     the number at upload) and push.destination is the parent model;
  2. uploads that folder as a new version of the parent model projects/P/locations/R/models/<model
     id> (created by the first push): alias `stable` for the first version, `canary` after
     (registry.py), with labels naming the pipeline run and a description with the accuracy and the
     card's URI;
  3. with an endpoint (TFX's serving args `endpoint_name`): deploys the version there with
     `canary_traffic_percent` of the traffic and the rest on the stable version (all of it for the
     first deployment); an earlier canary gets 0 %.
The PushedModel gets pushed_destination = the version's resource name (models/ID@VERSION),
pushed_version = the version id, and pipeline_names.PROP_RELEASE in words. Not blessed: nothing is
uploaded. `python -m releases promote|rollback|list projects/P/locations/R/models/ID` moves the
aliases and the traffic afterwards.
"""
import dataclasses
import datetime
import re
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils

from common import model_card, pipeline_names
from components.atomic_pusher import executor as atomic
from components.vertex_pusher import registry

REGISTRY_ARGS_KEY = "vertex_model_registry"  # custom_config: {model_id, canary_traffic_percent}
MODEL_ID = "model_id"
CANARY_TRAFFIC_PERCENT = "canary_traffic_percent"
_EDGE_ON_VERTEX = "Vertex AI: the TFLite files stay in the Trainer's Model artifact"


@dataclasses.dataclass(frozen=True)
class RegistrySettings:
    """What custom_config says about the registry and the endpoint."""
    target: registry.VertexTarget
    serving_image: str
    canary_traffic_percent: int
    deploy_args: Dict[str, Any]

    @classmethod
    def from_custom_config(cls, custom_config: Dict[str, Any]) -> "RegistrySettings":
        serving_args = dict(custom_config.get(constants.SERVING_ARGS_KEY) or {})
        registry_args = custom_config.get(REGISTRY_ARGS_KEY) or {}
        project = serving_args.get("project_id") or serving_args.get("project")
        region = custom_config.get(constants.VERTEX_REGION_KEY)
        model_id = registry_args.get(MODEL_ID, "")
        percent = registry_args.get(CANARY_TRAFFIC_PERCENT, 0)
        if not project or not region:
            raise ValueError(f"custom_config needs {constants.SERVING_ARGS_KEY}.project_id and "
                             f"{constants.VERTEX_REGION_KEY}")
        if not registry.MODEL_ID_PATTERN.fullmatch(model_id or ""):
            raise ValueError(f"{REGISTRY_ARGS_KEY}.{MODEL_ID}={model_id!r}: a Vertex AI model id is 1 to 63 "
                             "lowercase letters, digits, '_' or '-', starting with a letter")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"{REGISTRY_ARGS_KEY}.{CANARY_TRAFFIC_PERCENT}={percent!r}: an integer in [0, 100]")
        deploy_args = {k: v for k, v in serving_args.items() if k in ("machine_type", "min_replica_count",
                                                                       "max_replica_count", "service_account")}
        return cls(registry.VertexTarget(project, region, model_id, serving_args.get("endpoint_name", "")),
                   custom_config.get(constants.VERTEX_CONTAINER_IMAGE_URI_KEY) or "", percent, deploy_args)


def label_value(text: str) -> str:
    """A Vertex label value: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def version_description(card: Dict[str, Any], card_uri: str) -> str:
    evaluation = card.get("evaluation") or {}
    accuracy = evaluation.get("accuracy")
    quality = (f"accuracy {accuracy:.3f} on {evaluation.get('examples')} eval images (TFMA); "
               if accuracy is not None else "")
    return f"{quality}model card: {card_uri}"


class VertexRegistryPusherExecutor(atomic.ReferenceBlessingCheck, pusher_executor.Executor):
    """Pushes a blessed model as a version of the parent model (module docstring)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = RegistrySettings.from_custom_config(
            json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {})
        pushed_model = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed_model)
            return
        model_path = self.GetModelPath(input_dict)
        io_utils.copy_dir(src=model_path, dst=pushed_model.uri)
        evaluations = input_dict.get(atomic.EDGE_EVALUATION_KEY) or []
        held_back = {}
        if evaluations:
            edge = atomic.read_edge_evaluation(evaluations[0].uri)
            held_back = {f: _EDGE_ON_VERTEX for f in edge.get(pipeline_names.EDGE_GATE, {})}
        context = self._context
        card = model_card.collect(atomic.card_sources(
            input_dict, atomic.EdgePush({}, [], held_back),
            context.pipeline_info.id if context and context.pipeline_info else "",
            context.pipeline_run_id if context else None))
        pushed_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        card = model_card.with_push(card, None, settings.target.parent_model, pushed_at,
                                    atomic.fingerprint(atomic.saved_model_sources(model_path)[1]))
        card_uri = model_card.write_card_files(card, pushed_model.uri)
        registry.init(settings.target)
        labels = {"pipeline": label_value(card["lineage"]["pipeline"] or "none"),
                  "pipeline-run": label_value(card["lineage"]["run_id"] or "none")}
        pushed = registry.push_version(settings.target, pushed_model.uri, settings.serving_image,
                                       version_description(card, card_uri), labels,
                                       settings.canary_traffic_percent, settings.deploy_args)
        release = f"version {pushed.version_id} is {pushed.aliases[0]}" + (
            f"; endpoint traffic {pushed.traffic_split}" if pushed.traffic_split is not None else "")
        logging.info("VertexRegistryPusher: %s (%s).", release, pushed.resource_name)
        self._MarkPushed(pushed_model, pushed_destination=pushed.resource_name, pushed_version=pushed.version_id)
        pushed_model.set_string_custom_property(pipeline_names.PROP_RELEASE, release)
