"""Releases on Vertex AI: pushes are versions of one Model in the Model Registry, the labels `stable`
and `canary` are version aliases, and an endpoint splits traffic between them. Used by the
VertexRegistryPusher (a push) and by `python -m releases` (promote, rollback, list).

Everything goes through the google-cloud-aiplatform SDK (aiplatform.Model.upload with parent_model,
ModelRegistry's aliases and version labels, Endpoint.deploy with a traffic split, Endpoint.update),
over its REST transport: the transport the tests fake (tests/fake_vertex.py answers the HTTP calls
and parses every request body into google.cloud.aiplatform_v1's own message types).

Where the release history lives: in the registry itself, as version labels, so any machine with
credentials can roll back without a local state file:
    release-stable-since  unix seconds: when the version became stable (push or promote)
    release-withdrawn     unix seconds: when it was rolled back (a rollback never returns to it)
A rollback goes to the version with the latest `release-stable-since` other than the current
stable, not withdrawn.

An alias names one version of a model. Moving one is done as two calls, removing it from the old
version and then adding it to the new one, which works whether the service moves an alias by itself
or refuses a second holder (not checked against the real service: see docs/releases.md). Between
the two calls the alias names no version; endpoint traffic is not affected (it follows deployed
models, not aliases).
"""
import dataclasses
import re
import time
from typing import Any, Dict, List, Optional

from common.releases import CANARY, LABELS, STABLE, ReleaseError

LABEL_STABLE_SINCE = "release-stable-since"
LABEL_WITHDRAWN = "release-withdrawn"
# Model IDs Vertex accepts for a new Model (UploadModelRequest.model_id).
MODEL_ID_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """The parent Model (project, region, model id) and, optionally, the endpoint that serves it
    (a display name, or an endpoint ID or resource name)."""
    project: str
    region: str
    model_id: str
    endpoint: str = ""

    @property
    def parent_model(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/models/{self.model_id}"

    @classmethod
    def from_resource(cls, resource: str, endpoint: str = "") -> "VertexTarget":
        """From `projects/P/locations/R/models/ID`."""
        match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/models/([^/@]+)", resource)
        if not match:
            raise ReleaseError(f"{resource!r} is not a Vertex AI model resource name "
                               "(projects/PROJECT/locations/REGION/models/MODEL_ID)")
        return cls(*match.groups(), endpoint=endpoint)


@dataclasses.dataclass
class VersionView:
    """One registry version as the release commands see it."""
    version_id: str
    aliases: List[str]
    labels: Dict[str, str]
    description: str
    created: str
    artifact_uri: str
    traffic: Optional[int] = None  # percent of the endpoint's traffic; None without an endpoint or not deployed
    deployed_model_id: Optional[str] = None

    @property
    def stable_since(self) -> Optional[int]:
        value = self.labels.get(LABEL_STABLE_SINCE)
        return int(value) if value and value.isdigit() else None

    @property
    def withdrawn(self) -> bool:
        return LABEL_WITHDRAWN in self.labels


def init(target: VertexTarget) -> None:
    """The SDK's defaults for this target, REST transport (what the tests drive)."""
    from google.cloud import aiplatform

    aiplatform.init(project=target.project, location=target.region, api_transport="rest")


def _registry(target: VertexTarget):
    from google.cloud import aiplatform

    return aiplatform.models.ModelRegistry(target.parent_model)


def model_exists(target: VertexTarget) -> bool:
    from google.api_core import exceptions
    from google.cloud import aiplatform

    try:
        aiplatform.Model(target.parent_model)
        return True
    except exceptions.NotFound:
        return False


def versions(target: VertexTarget, endpoint=None) -> List[VersionView]:
    """Every version of the model, newest first, with its aliases, labels and (with an endpoint) traffic."""
    registry = _registry(target)
    # ListModelVersions returns whole Model messages: labels included (ModelRegistry.list_versions' VersionInfo has none).
    models = registry.client.list_model_versions(name=target.parent_model)
    deployed = _deployed_by_version(endpoint) if endpoint is not None else {}
    split = dict(endpoint.traffic_split) if endpoint is not None else {}
    views = []
    for model in models:
        deployed_id = deployed.get(model.version_id)
        views.append(VersionView(
            version_id=model.version_id, aliases=sorted(model.version_aliases), labels=dict(model.labels),
            description=model.version_description, created=model.version_create_time.isoformat()
            if model.version_create_time else "", artifact_uri=model.artifact_uri,
            traffic=split.get(deployed_id, 0) if deployed_id else None, deployed_model_id=deployed_id))
    return sorted(views, key=lambda v: int(v.version_id) if v.version_id.isdigit() else 0, reverse=True)


def _holder(views: List[VersionView], alias: str) -> Optional[VersionView]:
    return next((v for v in views if alias in v.aliases), None)


def _find(views: List[VersionView], version_id: str) -> VersionView:
    view = next((v for v in views if v.version_id == str(version_id)), None)
    if view is None:
        raise ReleaseError(f"version {version_id} is not a version of the model "
                           f"(versions: {', '.join(v.version_id for v in views) or 'none'})")
    return view


def _move_alias(target: VertexTarget, alias: str, views: List[VersionView], to: Optional[str]) -> None:
    """Removes the alias from its holder, then adds it to `to` (None: only removes)."""
    registry = _registry(target)
    holder = _holder(views, alias)
    if holder is not None and holder.version_id != to:
        registry.remove_version_aliases([alias], holder.version_id)
    if to is not None and (holder is None or holder.version_id != to):
        registry.add_version_aliases([alias], to)


def _set_labels(target: VertexTarget, view: VersionView, add: Dict[str, str], remove=()) -> None:
    """The version's labels with `add` and without `remove`. UpdateModel changes a version's labels
    only when the name carries @version (ModelRegistry.update_version sends the name GetModel returns,
    which has none: a model-wide update), so the request is made here with the generated client."""
    from google.cloud.aiplatform.compat.types import model as gca_model
    from google.protobuf import field_mask_pb2

    labels = {k: v for k, v in view.labels.items() if k not in remove}
    labels.update(add)
    if labels != view.labels:
        _registry(target).client.update_model(
            model=gca_model.Model(name=f"{target.parent_model}@{view.version_id}", labels=labels),
            update_mask=field_mask_pb2.FieldMask(paths=["labels"]))


# ---------------------------------------------------------------- the endpoint

def endpoint_of(target: VertexTarget, create: bool = False):
    """The target's endpoint (None without one): by resource name or ID, else by display name;
    created with that display name when `create` and there is none."""
    from google.cloud import aiplatform

    if not target.endpoint:
        return None
    if target.endpoint.startswith("projects/") or target.endpoint.isdigit():
        return aiplatform.Endpoint(target.endpoint)
    # Listed with the generated client: aiplatform.Endpoint.list (1.165.1) drops every endpoint over
    # REST, its public-endpoint filter taking the raw protobuf messages it gets there as truthy.
    from google.cloud.aiplatform import initializer, utils

    client = initializer.global_config.create_client(client_class=utils.EndpointClientWithOverride,
                                                     location_override=target.region)
    found = [e.name for e in client.list_endpoints(request={
        "parent": f"projects/{target.project}/locations/{target.region}",
        "filter": f'display_name="{target.endpoint}"'}) if e.display_name == target.endpoint]
    if found:
        return aiplatform.Endpoint(found[0])
    if not create:
        raise ReleaseError(f"no Vertex AI endpoint named {target.endpoint!r} in {target.project}/{target.region}")
    return aiplatform.Endpoint.create(display_name=target.endpoint)


def _deployed_by_version(endpoint) -> Dict[str, str]:
    """{model version id: deployed model id} of the endpoint's deployed models of any model."""
    return {d.model_version_id: d.id for d in endpoint.list_models()}


def _route(endpoint, split: Dict[str, int]) -> None:
    """Sets the endpoint's traffic split (deployed model id -> percent; others get 0)."""
    endpoint.update(traffic_split={k: v for k, v in split.items() if v})


def _deployed_id(endpoint, view: VersionView) -> str:
    deployed = _deployed_by_version(endpoint).get(view.version_id)
    if deployed is None:
        raise ReleaseError(f"version {view.version_id} is not deployed on endpoint {endpoint.display_name}: "
                           "deploy it first (gcloud ai endpoints deploy-model, or push it again)")
    return deployed


# ---------------------------------------------------------------- a push

@dataclasses.dataclass
class PushedVersion:
    resource_name: str  # projects/.../models/ID@VERSION
    version_id: str
    aliases: List[str]
    traffic_split: Optional[Dict[str, int]]  # the endpoint's split after the deployment (None: no endpoint)


def push_version(target: VertexTarget, artifact_uri: str, serving_image: str, description: str,
                 labels: Dict[str, str], canary_traffic_percent: int, deploy_args: Dict[str, Any],
                 now: Optional[float] = None) -> PushedVersion:
    """Uploads the model as a new version of the parent model (creating it for the first push):
    `stable` when no version is, else `canary` (taken from an earlier canary); with an endpoint,
    deploys it there with canary_traffic_percent of the traffic and the rest on the stable version
    (100 % for the first)."""
    from google.cloud import aiplatform

    now = time.time() if now is None else now
    exists = model_exists(target)
    views = versions(target) if exists else []
    first = _holder(views, STABLE) is None
    alias = STABLE if first else CANARY
    if not first:
        _move_alias(target, CANARY, views, None)  # the new version takes the alias
    version_labels = {**labels, **({LABEL_STABLE_SINCE: str(int(now))} if first else {})}
    model = aiplatform.Model.upload(
        display_name=target.model_id, artifact_uri=artifact_uri, serving_container_image_uri=serving_image,
        # The parent model for every push but the first, which creates it with this id.
        parent_model=target.parent_model if exists else None, model_id=None if exists else target.model_id,
        is_default_version=first, version_aliases=[alias], version_description=description,
        labels=version_labels, sync=True)
    split = None
    endpoint = endpoint_of(target, create=True)
    if endpoint is not None:
        stable = _holder(views, STABLE)
        stable_deployed = _deployed_by_version(endpoint).get(stable.version_id) if stable else None
        # "0" is the model being deployed (DeployModelRequest.traffic_split); a deployed model left
        # out gets 0 %, so an earlier canary stops receiving traffic.
        split = ({"0": 100} if stable_deployed is None
                 else {"0": canary_traffic_percent, stable_deployed: 100 - canary_traffic_percent})
        model.deploy(endpoint=endpoint, deployed_model_display_name=f"{target.model_id}-v{model.version_id}",
                     traffic_split={k: v for k, v in split.items() if v}, sync=True, **deploy_args)
        split = dict(endpoint.traffic_split)
    return PushedVersion(f"{target.parent_model}@{model.version_id}", model.version_id, [alias], split)


# ---------------------------------------------------------------- promote, rollback

def promote(target: VertexTarget, version_id: Optional[str], label: str, canary_traffic_percent: int,
            now: Optional[float] = None) -> str:
    """Moves the alias `label` onto the version (default: the canary, for stable) and, with an
    endpoint, the traffic: stable gets 100 %, a canary canary_traffic_percent beside the stable."""
    if label not in LABELS:
        raise ReleaseError(f"unknown label {label!r}: use {' or '.join(LABELS)}")
    now = time.time() if now is None else now
    views = versions(target)
    if version_id is None:
        holder = _holder(views, CANARY)
        if label != STABLE or holder is None:
            raise ReleaseError("nothing to promote: name a version (there is no canary)" if label == STABLE
                               else f"name the version to label {label}")
        version_id = holder.version_id
    view = _find(views, version_id)
    previous = _holder(views, label)
    endpoint = endpoint_of(target)
    if label == STABLE:
        split = {_deployed_id(endpoint, view): 100} if endpoint is not None else None
        if CANARY in view.aliases:
            _move_alias(target, CANARY, views, None)
        _move_alias(target, STABLE, views, view.version_id)
        _set_labels(target, view, {LABEL_STABLE_SINCE: str(int(now))}, remove=(LABEL_WITHDRAWN,))
    else:
        stable = _holder(views, STABLE)
        if stable is not None and stable.version_id == view.version_id:
            raise ReleaseError(f"version {view.version_id} is {STABLE}; a canary must be another version")
        split = None
        if endpoint is not None:
            split = {_deployed_id(endpoint, view): canary_traffic_percent}
            if stable is not None:
                split[_deployed_id(endpoint, stable)] = 100 - canary_traffic_percent
        _move_alias(target, CANARY, views, view.version_id)
    if split is not None:
        _route(endpoint, split)
    return (f"{label}: {previous.version_id if previous else 'none'} -> {view.version_id}"
            + (f"; traffic {_split_text(split)}" if split is not None else ""))


def rollback(target: VertexTarget, label: str, now: Optional[float] = None) -> str:
    """stable: back to the version stable before it (the latest release-stable-since, not withdrawn),
    the version left is withdrawn, and the endpoint sends it 0 %; canary: the alias is removed, the
    version withdrawn, and its traffic goes to the stable version."""
    now = time.time() if now is None else now
    views = versions(target)
    endpoint = endpoint_of(target)
    current = _holder(views, label)
    if label not in LABELS:
        raise ReleaseError(f"unknown label {label!r}: use {' or '.join(LABELS)}")
    if current is None:
        raise ReleaseError(f"there is no {label} version to roll back")
    if label == CANARY:
        stable = _holder(views, STABLE)
        split = {_deployed_id(endpoint, stable): 100} if endpoint is not None and stable is not None else None
        _move_alias(target, CANARY, views, None)
        _set_labels(target, current, {LABEL_WITHDRAWN: str(int(now))})
        if split is not None:
            _route(endpoint, split)
        return (f"{CANARY}: {current.version_id} -> none ({current.version_id} withdrawn)"
                + (f"; traffic {_split_text(split)}" if split is not None else ""))
    earlier = [v for v in views if v.stable_since is not None and not v.withdrawn and v.version_id != current.version_id]
    if not earlier:
        raise ReleaseError(f"nothing to roll back to: version {current.version_id} is the only {STABLE} there has been")
    back = max(earlier, key=lambda v: v.stable_since)
    split = {_deployed_id(endpoint, back): 100} if endpoint is not None else None
    _move_alias(target, STABLE, views, back.version_id)
    _set_labels(target, current, {LABEL_WITHDRAWN: str(int(now))})
    if split is not None:
        _route(endpoint, split)
    return (f"{STABLE}: {current.version_id} -> {back.version_id} ({current.version_id} withdrawn)"
            + (f"; traffic {_split_text(split)}" if split is not None else ""))


def _split_text(split: Dict[str, int]) -> str:
    return ", ".join(f"deployed model {k} {v} %" for k, v in sorted(split.items()))
