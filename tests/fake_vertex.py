"""Test helper: an in-memory Vertex AI behind the google-cloud-aiplatform SDK's REST transport.

FakeVertex.install(monkeypatch) replaces google.auth's AuthorizedSession.request, the one place the
SDK's REST transport sends HTTP: everything above it (the high-level SDK, the generated v1 client,
its JSON transcoding, long-running operations) runs for real. Each request body is parsed into the
API's own message type (google.cloud.aiplatform_v1.types, unknown fields refused), recorded in
`requests`, and applied to a small model of the service: Models with versions, aliases (one holder
each: adding an alias another version holds is refused, as the stricter reading of the API) and
labels; Endpoints with deployed models and a traffic split that must add up to 100.
"""
import dataclasses
import json
import re
import urllib.parse
from typing import Any, Dict, List, Optional

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from google.protobuf import json_format

HOST = "https://{region}-aiplatform.googleapis.com"
_V1 = "type.googleapis.com/google.cloud.aiplatform.v1."


@dataclasses.dataclass
class Request:
    method: str
    path: str  # without host and query
    query: Dict[str, str]
    body: Optional[Dict[str, Any]]  # the JSON body as sent
    message_type: str  # the aiplatform_v1 type it was parsed into ("" for a body-less call)


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


class FakeVertex:
    def __init__(self, project: str = "test-proj", region: str = "europe-west4"):
        self.project, self.region = project, region
        self.models: Dict[str, Dict[str, Dict[str, Any]]] = {}  # model id -> version id -> Model JSON
        self.endpoints: Dict[str, Dict[str, Any]] = {}  # endpoint id -> Endpoint JSON
        self.requests: List[Request] = []
        self._ids = 1000
        self.clock = 1765000000

    # ------------------------------------------------------------ installation
    def install(self, monkeypatch) -> "FakeVertex":
        from google.auth.transport import requests as auth_requests

        fake = self
        monkeypatch.setattr(auth_requests.AuthorizedSession, "request",
                            lambda session, method, url, data=None, headers=None, **kw: fake.handle(method, url, data, kw))
        # No ambient credentials are looked up (google.auth.default would search the machine).
        monkeypatch.setattr("google.auth.default", lambda *a, **k: (AnonymousCredentials(), self.project))
        return self

    @property
    def location(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    # ------------------------------------------------------------ HTTP
    def handle(self, method: str, url: str, data, kwargs) -> requests.Response:
        parsed = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        query.update({k: v for k, v in (kwargs.get("params") or []) if not k.startswith("$")})
        body = json.loads(data) if data else None
        response = requests.Response()
        response.headers["Content-Type"] = "application/json"
        response.request = requests.Request(method, url).prepare()
        try:
            status, payload = 200, self._route(method, urllib.parse.unquote(parsed.path), query, body)
        except ApiError as e:
            status, payload = e.code, {"error": {"code": e.code, "message": e.message, "status": e.status}}
        response.status_code = status
        response._content = json.dumps(payload).encode("utf-8")
        return response

    def _record(self, method, path, query, body, message_type=None) -> Any:
        parsed = None
        if message_type is not None:
            # The body must be a valid JSON form of the API's message: an unknown or mistyped field fails here.
            parsed = message_type.pb(message_type())
            json_format.Parse(json.dumps(body or {}), parsed, ignore_unknown_fields=False)
        self.requests.append(Request(method, path, query, body, message_type.__name__ if message_type else ""))
        return parsed

    def _route(self, method, path, query, body):
        loc = re.escape(f"/v1/{self.location}")
        routes = [
            ("POST", loc + r"/models:upload", self._upload, aiplatform_v1.UploadModelRequest),
            ("GET", loc + r"/models/([^/:@]+)(?:@([^/:]+))?", self._get_model, None),
            ("GET", loc + r"/models/([^/:@]+):listVersions", self._list_versions, None),
            ("POST", loc + r"/models/([^/:@]+)@([^/:]+):mergeVersionAliases", self._merge_aliases,
             aiplatform_v1.MergeVersionAliasesRequest),
            ("PATCH", loc + r"/models/([^/:@]+)@([^/:]+)", self._update_model, aiplatform_v1.Model),
            ("GET", loc + r"/endpoints", self._list_endpoints, None),
            ("POST", loc + r"/endpoints", self._create_endpoint, aiplatform_v1.Endpoint),
            ("GET", loc + r"/endpoints/([^/:]+)", self._get_endpoint, None),
            ("POST", loc + r"/endpoints/([^/:]+):deployModel", self._deploy, aiplatform_v1.DeployModelRequest),
            ("PATCH", loc + r"/endpoints/([^/:]+)", self._update_endpoint, aiplatform_v1.Endpoint),
        ]
        for verb, pattern, handler, message_type in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                parsed = self._record(method, path, query, body, message_type)
                return handler(*match.groups(), query=query, body=body, parsed=parsed)
        raise AssertionError(f"the fake has no route for {method} {path} ({query})")

    # ------------------------------------------------------------ helpers
    def _now(self) -> str:
        self.clock += 1
        return f"2025-12-06T{(self.clock // 3600) % 24:02d}:{(self.clock // 60) % 60:02d}:{self.clock % 60:02d}Z"

    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    @staticmethod
    def _operation(name: str, response_type: str, response: Dict[str, Any]) -> Dict[str, Any]:
        return {"name": name, "done": True, "response": {"@type": _V1 + response_type, **response}}

    def _versions(self, model_id: str) -> Dict[str, Dict[str, Any]]:
        if model_id not in self.models:
            raise ApiError(404, "NOT_FOUND", f"Model {self.location}/models/{model_id} not found")
        return self.models[model_id]

    def _version(self, model_id: str, ref: Optional[str]) -> Dict[str, Any]:
        versions = self._versions(model_id)
        ref = ref or "default"
        for version in versions.values():
            if version["versionId"] == ref or ref in version["versionAliases"]:
                return version
        raise ApiError(404, "NOT_FOUND", f"Model version {model_id}@{ref} not found")

    def holder(self, model_id: str, alias: str) -> Optional[str]:
        """The version id holding the alias (None when none does)."""
        return next((v["versionId"] for v in self.models.get(model_id, {}).values() if alias in v["versionAliases"]), None)

    def _add_aliases(self, model_id: str, version: Dict[str, Any], aliases: List[str]) -> None:
        for alias in aliases:
            holder = self.holder(model_id, alias)
            if holder not in (None, version["versionId"]) and alias != "default":
                raise ApiError(400, "INVALID_ARGUMENT", f"alias {alias} is used by version {holder}")
            if alias == "default" and holder not in (None, version["versionId"]):
                self.models[model_id][holder]["versionAliases"].remove("default")
            if alias not in version["versionAliases"]:
                version["versionAliases"].append(alias)

    # ------------------------------------------------------------ the Model Registry
    def _upload(self, query, body, parsed):
        model = body["model"]
        parent = body.get("parentModel")
        if parent:
            model_id = parent.rsplit("/", 1)[1]
            versions = self._versions(model_id)
        else:
            model_id = body.get("modelId") or self._next_id()
            if model_id in self.models:
                raise ApiError(409, "ALREADY_EXISTS", f"Model {model_id} already exists")
            versions = self.models[model_id] = {}
        version_id = str(len(versions) + 1)
        now = self._now()
        version = {"name": f"{self.location}/models/{model_id}", "versionId": version_id,
                   "displayName": model["displayName"], "artifactUri": model.get("artifactUri", ""),
                   "containerSpec": model.get("containerSpec", {}), "labels": dict(model.get("labels", {})),
                   "versionDescription": model.get("versionDescription", ""), "versionAliases": [],
                   "versionCreateTime": now, "versionUpdateTime": now, "createTime": now,
                   # What the service says of a custom-container model: deployable on dedicated machines.
                   "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"]}
        aliases = list(model.get("versionAliases", []))
        if not versions:
            aliases.append("default")  # the first version of a model is its default
        versions[version_id] = version
        try:
            self._add_aliases(model_id, version, aliases)
        except ApiError:
            del versions[version_id]
            raise
        return self._operation(f"{self.location}/models/{model_id}/operations/{self._next_id()}", "UploadModelResponse",
                               {"model": f"{self.location}/models/{model_id}", "modelVersionId": version_id})

    def _get_model(self, model_id, ref, query, body, parsed):
        return self._version(model_id, ref)

    def _list_versions(self, model_id, query, body, parsed):
        return {"models": sorted(self._versions(model_id).values(), key=lambda v: int(v["versionId"]))}

    def _merge_aliases(self, model_id, ref, query, body, parsed):
        version = self._version(model_id, ref)
        for alias in [a for a in body["versionAliases"] if a.startswith("-")]:
            if alias[1:] in version["versionAliases"]:
                version["versionAliases"].remove(alias[1:])
        self._add_aliases(model_id, version, [a for a in body["versionAliases"] if not a.startswith("-")])
        version["versionUpdateTime"] = self._now()
        return version

    def _update_model(self, model_id, ref, query, body, parsed):
        version = self._version(model_id, ref)
        mask = query.get("updateMask", "").split(",")
        assert mask == ["labels"], mask  # the only update the release commands make
        version["labels"] = dict(body.get("labels", {}))
        version["versionUpdateTime"] = self._now()
        return version

    # ------------------------------------------------------------ endpoints
    def _endpoint(self, endpoint_id: str) -> Dict[str, Any]:
        if endpoint_id not in self.endpoints:
            raise ApiError(404, "NOT_FOUND", f"Endpoint {endpoint_id} not found")
        return self.endpoints[endpoint_id]

    def _list_endpoints(self, query, body, parsed):
        wanted = re.fullmatch(r'display_name="(.*)"', query.get("filter", ""))
        found = [e for e in self.endpoints.values() if not wanted or e["displayName"] == wanted.group(1)]
        return {"endpoints": found}

    def _create_endpoint(self, query, body, parsed):
        endpoint_id = self._next_id()
        self.endpoints[endpoint_id] = {"name": f"{self.location}/endpoints/{endpoint_id}",
                                       "displayName": body["displayName"], "deployedModels": [], "trafficSplit": {},
                                       "createTime": self._now()}
        return self._operation(f"{self.location}/endpoints/{endpoint_id}/operations/{self._next_id()}",
                               "Endpoint", self.endpoints[endpoint_id])

    def _get_endpoint(self, endpoint_id, query, body, parsed):
        return self._endpoint(endpoint_id)

    @staticmethod
    def _check_split(split: Dict[str, int], deployed_ids: List[str]) -> None:
        if split and sum(split.values()) != 100:
            raise ApiError(400, "INVALID_ARGUMENT", f"traffic split {split} does not add up to 100")
        unknown = sorted(set(split) - set(deployed_ids))
        if unknown:
            raise ApiError(400, "INVALID_ARGUMENT", f"traffic split names unknown deployed models {unknown}")

    def _deploy(self, endpoint_id, query, body, parsed):
        endpoint = self._endpoint(endpoint_id)
        model = body["deployedModel"]["model"]
        match = re.fullmatch(re.escape(self.location) + r"/models/([^@]+)(?:@(.+))?", model)
        version = self._version(match.group(1), match.group(2))
        deployed_id = self._next_id()
        split = {deployed_id if k == "0" else k: v for k, v in (body.get("trafficSplit") or {"0": 100}).items()}
        self._check_split(split, [d["id"] for d in endpoint["deployedModels"]] + [deployed_id])
        deployed = {"id": deployed_id, "model": f"{self.location}/models/{match.group(1)}",
                    "modelVersionId": version["versionId"], "displayName": body["deployedModel"].get("displayName", ""),
                    "dedicatedResources": body["deployedModel"].get("dedicatedResources", {})}
        endpoint["deployedModels"].append(deployed)
        endpoint["trafficSplit"] = split
        return self._operation(f"{endpoint['name']}/operations/{self._next_id()}", "DeployModelResponse",
                               {"deployedModel": deployed})

    def _update_endpoint(self, endpoint_id, query, body, parsed):
        endpoint = self._endpoint(endpoint_id)
        assert query.get("updateMask") == "trafficSplit", query  # the field mask, in JSON (camelCase)
        split = {k: int(v) for k, v in body.get("trafficSplit", {}).items()}
        self._check_split(split, [d["id"] for d in endpoint["deployedModels"]])
        endpoint["trafficSplit"] = split
        return endpoint

    # ------------------------------------------------------------ reading back
    def traffic(self, endpoint_id: str) -> Dict[str, int]:
        """{model version id: percent} of the endpoint (deployed models without traffic left out)."""
        endpoint = self.endpoints[endpoint_id]
        by_id = {d["id"]: d["modelVersionId"] for d in endpoint["deployedModels"]}
        return {by_id[k]: v for k, v in endpoint["trafficSplit"].items() if v}

    def bodies(self, message_type: str) -> List[Dict[str, Any]]:
        return [r.body for r in self.requests if r.message_type == message_type]
