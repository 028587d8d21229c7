"""Release control of a serving dir (common/releases.py, python -m releases): the labels stable and
canary, TF Serving's model config file written with them, promote, rollback and list.

The serving dirs here hold version folders with a card file or none; the Pusher's own writes are
tested in tests/test_atomic_pusher.py, and a real run's card in tests/test_model_card.py.
"""
import http.server
import json
import os
import random
import threading

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

import pipeline_runs
from common import pipeline_names, releases
from local_http import LocalHttpServer
from releases import __main__ as releases_cli
from releases import local
from trainer_module import names

V1, V2, V3 = 1765000001, 1765000002, 1765000003


def _version(serving, version, accuracy=None):
    folder = serving / str(version)
    (folder / names.EXTRA_ASSETS_DIR).mkdir(parents=True)
    (folder / pipeline_names.SAVED_MODEL_FILE).write_bytes(b"model")
    if accuracy is not None:  # the card's figures `list` shows
        card = {"evaluation": {"accuracy": accuracy, "examples": 120},
                "verdict": {"blessed": True, "edge_gate": {"float16": {"pushed": True}, "int8": {"pushed": False}}}}
        (folder / names.EXTRA_ASSETS_DIR / pipeline_names.MODEL_CARD_JSON).write_text(json.dumps(card))
        (folder / names.EXTRA_ASSETS_DIR / pipeline_names.MODEL_CARD_HTML).write_text("<html></html>")
    return folder


def _push(serving, version, **kwargs):
    """What the Pusher does: the version folder in place, then the release recorded."""
    _version(serving, version, **kwargs)
    return releases.record_push(str(serving), version)


def _config(serving):
    """models.config as TF Serving parses it (its own message type, text format)."""
    text = (serving / pipeline_names.MODEL_CONFIG_FILE).read_text()
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def _model(serving):
    config = _config(serving)
    assert len(config.model_config_list.config) == 1
    model = config.model_config_list.config[0]
    return list(model.model_version_policy.specific.versions), dict(model.version_labels)


def _cli(capsys, *argv):
    code = releases_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def three(tmp_path):
    """A serving dir with three pushed versions: V1 stable, V2 canary, V3 staged beside it."""
    serving = tmp_path / "serving_model" / "intel-scenes"
    serving.mkdir(parents=True)
    messages = [_push(serving, v, accuracy=a) for v, a in ((V1, 0.9), (V2, 0.92), (V3, 0.93))]
    return serving, messages


def test_pushes_become_stable_canary_then_staged_in_tf_servings_config(three):
    serving, messages = three
    assert messages[0] == f"version {V1} is stable (the first release)"
    assert messages[1] == f"version {V2} is canary; stable stays {V1}"
    assert messages[2].startswith(f"version {V3} is loaded without a label (canary stays {V2}")
    config = _config(serving)
    model = config.model_config_list.config[0]
    assert (model.name, model.base_path, model.model_platform) == ("intel-scenes", "/models/intel-scenes", "tensorflow")
    assert _model(serving) == ([V1, V2, V3], {"stable": V1, "canary": V2})
    # The file says who writes it, in comments TF Serving's text parser skips.
    assert (serving / pipeline_names.MODEL_CONFIG_FILE).read_text().startswith("# Written by intel-scenes-tfx")
    state = releases.read_state(str(serving))
    assert [e["action"] for e in state.events] == ["push"] * 3 and state.staged == {str(V3): "pushed while a canary was out"}


def test_a_rerun_recording_the_same_version_changes_nothing(three):
    serving, _ = three
    before = (serving / pipeline_names.RELEASES_FILE).read_text()
    assert releases.record_push(str(serving), V2) == f"version {V2} is already registered (canary)"
    after = json.loads((serving / pipeline_names.RELEASES_FILE).read_text())
    assert after["labels"] == json.loads(before)["labels"] and len(after["events"]) == 3


def test_promote_rollback_and_list_from_the_command_line(three, capsys):
    serving, _ = three
    before = (serving / pipeline_names.MODEL_CONFIG_FILE).read_text()
    code, out, err = _cli(capsys, "promote", str(serving.parent.parent))  # the output dir: its only serving dir
    assert code == 0 and err == ""
    assert out.splitlines()[0] == f"stable: {V1} -> {V2}"
    # V1 stays loaded as the rollback target; V3 is still staged.
    assert _model(serving) == ([V1, V2, V3], {"stable": V2})
    assert (serving / pipeline_names.MODEL_CONFIG_FILE).read_text() != before

    code, out, _ = _cli(capsys, "promote", str(serving), str(V3), "--label", "canary")
    assert code == 0 and out.splitlines()[0] == f"canary: none -> {V3}"
    assert _model(serving) == ([V1, V2, V3], {"stable": V2, "canary": V3})

    code, out, _ = _cli(capsys, "rollback", str(serving))
    assert code == 0 and out.splitlines()[0] == f"stable: {V2} -> {V1} ({V2} withdrawn)"
    assert _model(serving) == ([V1, V3], {"stable": V1, "canary": V3})

    code, out, _ = _cli(capsys, "list", str(serving), "--json")
    listing = json.loads(out)
    rows = {r["version"]: r for r in listing["versions"]}
    assert [r["version"] for r in listing["versions"]] == [V3, V2, V1]
    assert (rows[V1]["release"], rows[V3]["release"]) == ("stable", "canary")
    assert rows[V2]["release"].startswith("withdrawn") and rows[V2]["loaded"] is False
    assert (rows[V3]["accuracy"], rows[V3]["eval_examples"], rows[V3]["blessed"], rows[V3]["edge_pushed"]) == \
        (0.93, 120, True, ["float16"])
    assert rows[V3]["card"] == str(serving / str(V3) / names.EXTRA_ASSETS_DIR / pipeline_names.MODEL_CARD_HTML)
    assert listing["config_state"] == "in step with releases.json"
    code, text, _ = _cli(capsys, "list", str(serving))
    assert f"intel-scenes in {serving}: stable {V1}, canary {V3}, rollback target none" in text
    assert any(line.startswith(f"{V2} ") and "withdrawn" in line and "0.920" in line for line in text.splitlines())


def test_a_second_rollback_goes_further_back(tmp_path, capsys):
    serving = tmp_path / "s"
    for v in (V1, V2, V3):
        _push(serving, v)
        releases_cli.main(["promote", str(serving)])
    capsys.readouterr()
    assert releases.read_state(str(serving)).stable_history == [V1, V2, V3]
    assert _model(serving) == ([V2, V3], {"stable": V3})
    assert _cli(capsys, "rollback", str(serving))[1].splitlines()[0] == f"stable: {V3} -> {V2} ({V3} withdrawn)"
    # The next rollback target (V1) is loaded by this write, before any label moves onto it.
    assert _model(serving) == ([V1, V2], {"stable": V2})
    assert _cli(capsys, "rollback", str(serving))[1].splitlines()[0] == f"stable: {V2} -> {V1} ({V2} withdrawn)"
    code, out, err = _cli(capsys, "rollback", str(serving))
    assert code == 1 and out == ""
    assert err == f"error: nothing to roll back to: version {V1} is the only stable there has been (exit 1)\n"


def test_promoting_a_version_that_is_not_loaded_stages_it_first(three, capsys):
    serving, _ = three
    _cli(capsys, "promote", str(serving))  # V2 stable, V1 rollback target
    _cli(capsys, "rollback", str(serving))  # V1 stable, V2 withdrawn and unloaded
    assert V2 not in _model(serving)[0]
    code, out, _ = _cli(capsys, "promote", str(serving), str(V2))
    assert code == 0 and out.startswith(f"version {V2} was not loaded: staged now")
    assert _model(serving) == ([V1, V2, V3], {"stable": V1})
    code, out, _ = _cli(capsys, "promote", str(serving), str(V2))
    assert out.splitlines()[0] == f"stable: {V1} -> {V2}" and _model(serving)[1] == {"stable": V2}


def test_label_moves_only_onto_versions_the_previous_config_loaded(tmp_path):
    """TF Serving refuses a config that moves an existing label onto a version it has not loaded
    (ServerCore::UpdateModelVersionLabelMap): over random pushes, promotes and rollbacks, every
    written config moves labels only onto versions the config before it loaded."""
    rng = random.Random(7)
    serving, version, moves = tmp_path / "s", 1765000000, 0
    serving.mkdir()
    for _ in range(300):
        before = _model(serving) if (serving / pipeline_names.MODEL_CONFIG_FILE).exists() else ([], {})
        state = releases.read_state(str(serving))
        action = rng.choice(["push", "promote", "promote_any", "canary", "rollback", "rollback_canary"])
        try:
            if action == "push" or state is None:
                version += 1
                _push(serving, version)
            elif action == "promote":
                local.promote(str(serving), None, releases.STABLE)
            elif action in ("promote_any", "canary"):
                local.promote(str(serving), rng.choice(releases.version_numbers(str(serving))),
                              releases.STABLE if action == "promote_any" else releases.CANARY)
            else:
                local.rollback(str(serving), releases.CANARY if action == "rollback_canary" else releases.STABLE)
        except Exception as e:  # noqa: BLE001 - a refused change writes nothing
            assert type(e).__name__ == "DataError", e
            assert _model(serving) == before
            continue
        loaded, labels = _model(serving)
        for label, target in labels.items():
            if before[1].get(label) not in (None, target):
                assert target in before[0], (action, before, labels)
                moves += 1
        assert set(labels.values()) <= set(loaded) and len(loaded) <= 6
    assert moves > 20  # the check above ran on many label moves


def test_nothing_to_promote_unknown_version_and_damaged_state_are_one_line(tmp_path, capsys):
    serving = tmp_path / "s"
    _push(serving, V1)
    code, _, err = _cli(capsys, "promote", str(serving))
    assert (code, err) == (1, "error: nothing to promote: name a version (there is no canary) (exit 1)\n")
    code, _, err = _cli(capsys, "promote", str(serving), "42")
    assert code == 1 and err.startswith(f"error: version 42 is not in the serving dir (versions: {V1})")
    code, _, err = _cli(capsys, "list", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    (serving / pipeline_names.RELEASES_FILE).write_text("{not json")
    code, _, err = _cli(capsys, "list", str(serving))
    assert code == 1 and "releases.json is damaged" in err and err.count("\n") == 1


def test_a_serving_dir_pushed_before_release_control_adopts_its_newest_version(tmp_path, capsys):
    serving = tmp_path / "s"
    for v in (V1, V2):
        _version(serving, v)
    code, out, _ = _cli(capsys, "list", str(serving))
    assert code == 0 and "no releases.json yet" in out
    assert releases.record_push(str(serving), V3) == f"version {V3} is canary; stable stays {V2}"
    assert _model(serving) == ([V2, V3], {"stable": V2, "canary": V3})
    assert releases.read_state(str(serving)).events[0]["action"] == "adopt"


def test_concurrent_pushes_and_promotes_are_serialised(tmp_path):
    serving = tmp_path / "s"
    _push(serving, V1)
    versions = list(range(V1 + 1, V1 + 25))
    for v in versions:
        _version(serving, v)
    refused = []

    def promote_canary():
        try:
            local.promote(str(serving), None, releases.STABLE)
        except Exception as e:  # noqa: BLE001 - no canary at that moment: refused, nothing written
            refused.append(type(e).__name__)

    threads = [threading.Thread(target=releases.record_push, args=(str(serving), v)) for v in versions]
    threads += [threading.Thread(target=promote_canary) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = releases.read_state(str(serving))
    # Every push recorded exactly once: no read-modify-write lost another's change.
    assert sorted(e["version"] for e in state.events if e["action"] == "push") == [V1] + versions
    assert len([e for e in state.events if e["action"] == "promote"]) + len(refused) == 5
    assert set(refused) <= {"DataError"}
    assert set(_model(serving)[1].values()) <= set(_model(serving)[0])


class _Status(http.server.BaseHTTPRequestHandler):
    """TF Serving's model status API: GET /v1/models/<name>/versions/<v> (state per version)."""
    states = {}

    def do_GET(self):  # noqa: N802 - the handler API
        version = int(self.path.rsplit("/", 1)[1])
        if version not in self.states:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"model_version_status": [{"version": str(version), "state": self.states[version],
                                                     "status": {"error_code": "OK", "error_message": ""}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_server_check_refuses_a_label_move_onto_a_version_still_loading(three, capsys):
    serving, _ = three
    server = LocalHttpServer(_Status)
    try:
        _Status.states = {V1: "AVAILABLE", V2: "LOADING"}
        code, _, err = _cli(capsys, "promote", str(serving), "--server", server.url)
        assert code == 1 and f"reports version {V2} LOADING, not AVAILABLE" in err
        assert _model(serving)[1] == {"stable": V1, "canary": V2}  # nothing written
        _Status.states[V2] = "AVAILABLE"
        code, out, _ = _cli(capsys, "promote", str(serving), "--server", server.url)
        assert code == 0 and out.splitlines()[0] == f"stable: {V1} -> {V2}"
    finally:
        server.close()


@pytest.mark.slow
def test_the_pipelines_push_is_stable_and_later_runs_leave_the_release_files_alone(gate_runs):
    """Runs of tests/pipeline_runs.py: A pushes (the first release: stable); B (cached), C (not
    blessed) and D to F (stopped, or not blessed) write nothing into the serving dir."""
    serving = gate_runs.cfg.serving_model_dir
    version = int(os.path.basename(pipeline_runs.pushed_dir(gate_runs)))
    config = text_format.Parse(open(os.path.join(serving, pipeline_names.MODEL_CONFIG_FILE)).read(),
                               model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert (model.name, model.base_path) == (gate_runs.cfg.pipeline_name, f"/models/{gate_runs.cfg.pipeline_name}")
    assert (dict(model.version_labels), list(model.model_version_policy.specific.versions)) == ({"stable": version}, [version])
    summary = gate_runs.summaries[0]
    assert f"Release:            version {version} is stable (the first release)" in summary
    assert f"Model card:         {os.path.join(serving, str(version), names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_HTML)}" in summary
    assert all(digest == gate_runs.serving[0] for digest in gate_runs.serving[1:])
