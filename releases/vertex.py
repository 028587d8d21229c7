"""Release control of a Vertex AI model: the registry's versions with their aliases, verdict labels
and endpoint traffic, and the same promote and rollback as a serving dir
(components/vertex_pusher/registry.py makes the SDK calls)."""
from typing import Any, Dict, List, Optional

from common.releases import ReleaseError
from components.vertex_pusher import registry
from run_control import exit_codes


def _calls(fn, *args, **kwargs):
    """Runs a registry call; its errors as the command's one-line errors."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        return fn(*args, **kwargs)
    except ReleaseError as e:
        raise exit_codes.DataError(str(e)) from None
    except auth_exceptions.DefaultCredentialsError as e:
        raise exit_codes.UsageError(f"no Google Cloud credentials ({e}); run `gcloud auth application-default "
                                    "login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
    except api_exceptions.GoogleAPICallError as e:
        raise exit_codes.DataError(f"Vertex AI refused the request: {e}") from None


def target_of(resource: str, endpoint: str = "") -> registry.VertexTarget:
    try:
        target = registry.VertexTarget.from_resource(resource, endpoint)
    except ReleaseError as e:
        raise exit_codes.UsageError(str(e)) from None
    registry.init(target)
    return target


def promote(target: registry.VertexTarget, version: Optional[str], label: str, canary_traffic_percent: int) -> str:
    return _calls(registry.promote, target, version, label, canary_traffic_percent)


def rollback(target: registry.VertexTarget, label: str) -> str:
    return _calls(registry.rollback, target, label)


def listing(target: registry.VertexTarget) -> Dict[str, Any]:
    """The --json object of `list` for a Vertex AI model."""
    endpoint = _calls(registry.endpoint_of, target)
    views = _calls(registry.versions, target, endpoint)
    return {"model": target.parent_model, "endpoint": endpoint.resource_name if endpoint is not None else None,
            "versions": [{"version": v.version_id, "aliases": v.aliases, "labels": v.labels,
                          "description": v.description, "created": v.created, "artifact_uri": v.artifact_uri,
                          "traffic_percent": v.traffic, "deployed_model_id": v.deployed_model_id} for v in views]}


def format_listing(result: Dict[str, Any]) -> str:
    lines: List[str] = [f"{result['model']}" + (f" on endpoint {result['endpoint']}" if result["endpoint"] else ""),
                        "", f"{'version':<8} {'aliases':<16} {'traffic':>7} {'stable since':<13} "
                            f"{'withdrawn':<11} description"]
    for v in result["versions"]:
        traffic = "-" if v["traffic_percent"] is None else f"{v['traffic_percent']} %"
        lines.append(f"{v['version']:<8} {','.join(v['aliases']) or '-':<16} {traffic:>7} "
                     f"{v['labels'].get(registry.LABEL_STABLE_SINCE, '-'):<13} "
                     f"{v['labels'].get(registry.LABEL_WITHDRAWN, '-'):<11} {v['description']}")
    return "\n".join(lines)
