"""Releases on Vertex AI through the real google-cloud-aiplatform SDK against a fake transport
(tests/fake_vertex.py: every request body parsed into google.cloud.aiplatform_v1's message types).

The VertexRegistryPusher's executor pushes three blessed models: version 1 of a new Model (alias
stable, all the endpoint's traffic), then versions of it as parent model (alias canary, taken
from the previous canary, with the canary share of the traffic); `python -m releases` then
promotes, rolls back and lists, moving aliases, version labels and the endpoint's traffic split.
"""
import json
import os

import pytest
import tensorflow as tf
from google.cloud.aiplatform import initializer
from tfx.extensions.google_cloud_ai_platform import constants
from tfx import types
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import json_utils

from common import pipeline_names
from components.atomic_pusher import executor as atomic
from components.vertex_pusher import executor, registry
from components.vertex_pusher.component import VertexRegistryPusher
from fake_vertex import FakeVertex
from releases import __main__ as releases_cli
from trainer_module import names

PROJECT, REGION, MODEL_ID, ENDPOINT = "test-proj", "europe-west4", "intel-scenes", "intel-scenes-endpoint"
PARENT = f"projects/{PROJECT}/locations/{REGION}/models/{MODEL_ID}"
IMAGE = "europe-west4-docker.pkg.dev/test-proj/tfx/intel-scenes-serving:2.16.1"
CUSTOM_CONFIG = {
    constants.ENABLE_VERTEX_KEY: True, constants.VERTEX_REGION_KEY: REGION,
    constants.VERTEX_CONTAINER_IMAGE_URI_KEY: IMAGE,
    constants.SERVING_ARGS_KEY: {"project_id": PROJECT, "endpoint_name": ENDPOINT, "machine_type": "n1-standard-4"},
    executor.REGISTRY_ARGS_KEY: {executor.MODEL_ID: MODEL_ID, executor.CANARY_TRAFFIC_PERCENT: 10},
}


class _Scale(tf.Module):
    def __init__(self, value):
        super().__init__()
        self.value = tf.Variable(value)

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def __call__(self, x):
        return x * self.value


BUCKET = "gs://test-bucket/pipeline-root"


@pytest.fixture()
def gcs(tmp_path, monkeypatch):
    """gs:// writes of the executor (the model copy, the card) land in a local folder: TensorFlow's GCS
    filesystem is C++, out of the fake's reach, and Vertex uploads only from gs:// (the SDK stages a
    local folder to a bucket first). Returns local(gs_uri)."""
    root = tmp_path / "gcs"

    def local(uri):
        assert uri.startswith(BUCKET), uri
        return str(root) + uri[len(BUCKET):]

    real_copy, real_write = executor.io_utils.copy_dir, executor.model_card.write_card_files
    monkeypatch.setattr(executor.io_utils, "copy_dir", lambda src, dst: real_copy(src, local(dst)))
    monkeypatch.setattr(executor.model_card, "write_card_files",
                        lambda card, folder: BUCKET + real_write(card, local(folder))[len(str(root)):])
    return local


@pytest.fixture()
def fake(monkeypatch, gcs):
    # aiplatform.init sets the SDK's global config (aiplatform.init is bound to that object): its
    # attributes are put back after the test, so no project, region or transport leaks out.
    for attribute, value in list(vars(initializer.global_config).items()):
        monkeypatch.setattr(initializer.global_config, attribute, value)
    return FakeVertex(PROJECT, REGION).install(monkeypatch)


def _push(tmp_path, n, blessed=1, config=CUSTOM_CONFIG):
    """The executor as TFX runs it, on a real SavedModel; returns the PushedModel artifact."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / f"model-{n}")
    tf.saved_model.save(_Scale(float(n)), os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / f"blessing-{n}")
    blessing.set_int_custom_property(pipeline_names.PROP_BLESSED, blessed)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = f"{BUCKET}/Pusher/pushed_model/{n}"
    executor.VertexRegistryPusherExecutor().Do(
        {standard_component_specs.MODEL_KEY: [model], standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(config)})
    return pushed


def _aliases(fake):
    return {v["versionId"]: sorted(v["versionAliases"]) for v in fake.models[MODEL_ID].values()}


def _endpoint_id(fake):
    [endpoint_id] = fake.endpoints
    return endpoint_id


def test_pushes_are_versions_of_one_model_with_aliases_and_a_canary_share(tmp_path, fake, gcs):
    first = _push(tmp_path, 1)
    assert first.get_string_custom_property(pipeline_names.PROP_PUSHED_DESTINATION) == f"{PARENT}@1"
    assert first.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == "1"
    [upload] = fake.bodies("UploadModelRequest")
    # The first push creates the Model with the configured id: no parent yet.
    assert "parentModel" not in upload and upload["modelId"] == MODEL_ID
    assert sorted(upload["model"]["versionAliases"]) == ["default", "stable"]
    assert fake.traffic(_endpoint_id(fake)) == {"1": 100}

    second, third = _push(tmp_path, 2), _push(tmp_path, 3)
    assert _aliases(fake) == {"1": ["default", "stable"], "2": [], "3": ["canary"]}
    assert third.get_string_custom_property(pipeline_names.PROP_PUSHED_DESTINATION) == f"{PARENT}@3"
    uploads = fake.bodies("UploadModelRequest")
    card_uri = f"{third.uri}/{names.EXTRA_ASSETS_DIR}/{pipeline_names.MODEL_CARD_HTML}"
    # A push with a parent model: the request body as sent (and parsed as UploadModelRequest).
    assert uploads[2] == {
        "parentModel": PARENT,
        "model": {"displayName": MODEL_ID, "artifactUri": third.uri, "containerSpec": {"imageUri": IMAGE},
                  "versionAliases": ["canary"], "versionDescription": f"model card: {card_uri}",
                  "labels": {"pipeline": "none", "pipeline-run": "none"}}}
    # The alias move: canary off version 2 before version 3 takes it.
    assert [(r.path.rsplit("/", 1)[1], r.body) for r in fake.requests if r.message_type == "MergeVersionAliasesRequest"] \
        == [(f"{MODEL_ID}@2:mergeVersionAliases", {"versionAliases": ["-canary"]})]
    # The canary deployment: 10 % to the new version, 90 % to the stable one, none to version 2.
    deployed = {d["modelVersionId"]: d["id"] for d in fake.endpoints[_endpoint_id(fake)]["deployedModels"]}
    assert fake.bodies("DeployModelRequest")[2] == {
        "deployedModel": {"model": f"{PARENT}@3", "displayName": f"{MODEL_ID}-v3",
                          "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-4"},
                                                 "minReplicaCount": 1, "maxReplicaCount": 1}},
        "trafficSplit": {"0": 10, deployed["1"]: 90}}
    assert fake.traffic(_endpoint_id(fake)) == {"1": 90, "3": 10}
    assert third.get_string_custom_property(pipeline_names.PROP_RELEASE).startswith("version 3 is canary")
    # The card went with the files the version was made from (before the upload).
    with open(os.path.join(gcs(third.uri), names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_JSON)) as f:
        card = json.load(f)
    assert card["push"]["version"] is None and card["push"]["destination"] == PARENT
    assert second.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == "2"


def test_not_blessed_sends_nothing(tmp_path, fake):
    pushed = _push(tmp_path, 1, blessed=0)
    assert fake.requests == [] and pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 0


def _cli(capsys, *argv):
    code = releases_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_promote_rollback_and_list_move_aliases_labels_and_traffic(tmp_path, fake, capsys, monkeypatch):
    for n in (1, 2, 3):
        _push(tmp_path, n)
    endpoint_id = _endpoint_id(fake)
    deployed = {d["modelVersionId"]: d["id"] for d in fake.endpoints[endpoint_id]["deployedModels"]}
    monkeypatch.setattr(registry.time, "time", lambda: 1765000500.0)
    start = len(fake.requests)
    code, out, err = _cli(capsys, "promote", PARENT, "--endpoint", ENDPOINT)
    assert (code, err) == (0, "")
    assert out == f"stable: 1 -> 3; traffic deployed model {deployed['3']} 100 %"
    assert _aliases(fake) == {"1": ["default"], "2": [], "3": ["stable"]}
    assert fake.models[MODEL_ID]["3"]["labels"][registry.LABEL_STABLE_SINCE] == "1765000500"
    assert fake.traffic(endpoint_id) == {"3": 100}
    # The SDK's Endpoint.update sends the whole Endpoint with updateMask=trafficSplit (the fake checks
    # the mask): its split is what changes.
    promote = [(r.message_type, r.path.rsplit("/", 1)[1],
                {"trafficSplit": r.body["trafficSplit"]} if r.message_type == "Endpoint" else r.body)
               for r in fake.requests[start:] if r.body]
    assert promote == [
        ("MergeVersionAliasesRequest", f"{MODEL_ID}@3:mergeVersionAliases", {"versionAliases": ["-canary"]}),
        ("MergeVersionAliasesRequest", f"{MODEL_ID}@1:mergeVersionAliases", {"versionAliases": ["-stable"]}),
        ("MergeVersionAliasesRequest", f"{MODEL_ID}@3:mergeVersionAliases", {"versionAliases": ["stable"]}),
        # UpdateModel of the version (its name, with @3, is the URL path), labels only.
        ("Model", f"{MODEL_ID}@3", {"labels": {
            "pipeline": "none", "pipeline-run": "none", registry.LABEL_STABLE_SINCE: "1765000500"}}),
        ("Endpoint", endpoint_id, {"trafficSplit": {deployed["3"]: 100}}),
    ]

    monkeypatch.setattr(registry.time, "time", lambda: 1765000600.0)
    code, out, _ = _cli(capsys, "rollback", PARENT, "--endpoint", ENDPOINT)
    assert code == 0 and out == f"stable: 3 -> 1 (3 withdrawn); traffic deployed model {deployed['1']} 100 %"
    assert _aliases(fake)["1"] == ["default", "stable"] and _aliases(fake)["3"] == []
    assert fake.models[MODEL_ID]["3"]["labels"][registry.LABEL_WITHDRAWN] == "1765000600"
    assert fake.traffic(endpoint_id) == {"1": 100}

    code, out, err = _cli(capsys, "rollback", PARENT, "--endpoint", ENDPOINT)
    assert code == 1 and err == "error: nothing to roll back to: version 1 is the only stable there has been (exit 1)\n"

    code, out, _ = _cli(capsys, "promote", PARENT, "2", "--label", "canary", "--endpoint", ENDPOINT,
                        "--canary-traffic-percent", "25")
    assert code == 0 and fake.traffic(endpoint_id) == {"1": 75, "2": 25}
    code, out, _ = _cli(capsys, "list", PARENT, "--endpoint", ENDPOINT, "--json")
    listing = {v["version"]: v for v in json.loads(out)["versions"]}
    assert [(v, listing[v]["aliases"], listing[v]["traffic_percent"]) for v in ("3", "2", "1")] == [
        ("3", [], 0), ("2", ["canary"], 25), ("1", ["default", "stable"], 75)]
    assert listing["1"]["description"].startswith("model card: ")
    code, text, _ = _cli(capsys, "list", PARENT, "--endpoint", ENDPOINT)
    assert text.splitlines()[0] == f"{PARENT} on endpoint projects/{PROJECT}/locations/{REGION}/endpoints/{endpoint_id}"
    assert any(line.split()[:3] == ["2", "canary", "25"] for line in text.splitlines())


def test_rollback_of_the_canary_sends_its_traffic_to_the_stable_version(tmp_path, fake, capsys):
    _push(tmp_path, 1)
    _push(tmp_path, 2)
    code, out, _ = _cli(capsys, "rollback", PARENT, "--label", "canary", "--endpoint", ENDPOINT)
    assert code == 0 and out.startswith("canary: 2 -> none (2 withdrawn)")
    assert fake.traffic(_endpoint_id(fake)) == {"1": 100} and _aliases(fake)["2"] == []
    assert registry.LABEL_WITHDRAWN in fake.models[MODEL_ID]["2"]["labels"]


def test_registry_errors_and_bad_settings_are_one_line(tmp_path, fake, capsys):
    code, _, err = _cli(capsys, "list", f"projects/{PROJECT}/locations/{REGION}/models/absent")
    assert code == 1 and err.startswith("error: Vertex AI refused the request: 404") and err.count("\n") == 1
    code, _, err = _cli(capsys, "promote", "projects/p/models/x")
    assert code == 2 and "not a Vertex AI model resource name" in err
    bad = {**CUSTOM_CONFIG, executor.REGISTRY_ARGS_KEY: {executor.MODEL_ID: "9lives", executor.CANARY_TRAFFIC_PERCENT: 10}}
    with pytest.raises(ValueError, match="a Vertex AI model id is 1 to 63"):
        VertexRegistryPusher(model=None, model_blessing=None, custom_config=bad)
    with pytest.raises(ValueError, match="canary_traffic_percent=101"):
        executor.RegistrySettings.from_custom_config(
            {**CUSTOM_CONFIG, executor.REGISTRY_ARGS_KEY: {executor.MODEL_ID: "m", executor.CANARY_TRAFFIC_PERCENT: 101}})


def _blessing(tmp_path, blessed: int):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / f"blessing-{blessed}")
    blessing.set_int_custom_property(pipeline_names.PROP_BLESSED, blessed)
    return blessing


def test_the_registry_pusher_needs_the_reference_sets_blessing_too(tmp_path):
    """With a fixed reference set the model must be blessed there too before it becomes a version."""
    check = executor.VertexRegistryPusherExecutor()
    inputs = {standard_component_specs.MODEL_BLESSING_KEY: [_blessing(tmp_path, 1)]}
    assert check.CheckBlessing(inputs)
    assert not check.CheckBlessing({**inputs, atomic.REFERENCE_BLESSING_KEY: [_blessing(tmp_path, 0)]})
    assert check.CheckBlessing({**inputs, atomic.REFERENCE_BLESSING_KEY: [_blessing(tmp_path, 1)]})
    assert not check.CheckBlessing({standard_component_specs.MODEL_BLESSING_KEY: [_blessing(tmp_path, 0)],
                                    atomic.REFERENCE_BLESSING_KEY: [_blessing(tmp_path, 1)]})
    component = VertexRegistryPusher(
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        reference_blessing=types.Channel(type=standard_artifacts.ModelBlessing), custom_config=CUSTOM_CONFIG)
    assert component.id == pipeline_names.PUSHER_NODE
    assert atomic.REFERENCE_BLESSING_KEY in component.inputs
