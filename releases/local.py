"""Release control of a local serving dir: listing, promote and rollback around common/releases.py,
and TF Serving's own view of a version (its REST model status API) for --server."""
import json
import os
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from common import model_card, output_dir, pipeline_names, releases
from run_control import exit_codes
from trainer_module import names


def find_serving_dir(path: str, pipeline_name: Optional[str] = None) -> str:
    """A serving dir (numeric version folders or releases.json) itself, or the pipeline's serving dir
    under an output dir (<path>/serving_model/<name>: the only one, or pipeline_name's)."""
    if not os.path.isdir(path):
        raise exit_codes.UsageError(f"{path} is not a folder: give a serving dir or the pipeline's output dir")
    if os.path.exists(releases.state_path(path)) or releases.version_numbers(path):
        return path
    models = os.path.join(path, output_dir.SERVING_DIR)
    names_found = sorted(os.listdir(models)) if os.path.isdir(models) else []
    if pipeline_name:
        if pipeline_name in names_found:
            return output_dir.serving_model_dir(path, pipeline_name)
        raise exit_codes.UsageError(f"no serving dir for pipeline {pipeline_name!r} in {models} "
                                    f"(found: {', '.join(names_found) or 'none'})")
    if len(names_found) == 1:
        return output_dir.serving_model_dir(path, names_found[0])
    raise exit_codes.UsageError(f"{path} holds no pushed version" + (
        f" and {len(names_found)} serving dirs under {models} ({', '.join(names_found)}): name one with "
        "--pipeline-name" if names_found else ""))


def server_version_state(server: str, model_name: str, version: int, timeout: float = 10.0) -> str:
    """TF Serving's state of one version (AVAILABLE, LOADING, ...; NOT_LOADED when the server does not
    know it), from GET <server>/v1/models/<name>/versions/<version>."""
    url = f"{server.rstrip('/')}/v1/models/{model_name}/versions/{version}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - an operator's URL
            status = json.load(response).get("model_version_status") or []
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return "NOT_LOADED"
        raise exit_codes.DataError(f"TF Serving at {server} answered {e.code} for {url}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise exit_codes.DataError(f"cannot ask TF Serving at {server} ({url}): {e}") from None
    states = [s.get("state", "") for s in status if str(s.get("version")) == str(version)]
    return states[0] if states else "NOT_LOADED"


def _ensure_available(server: Optional[str], state: releases.ReleaseState, version: int, label: str) -> None:
    if not server:
        return
    seen = server_version_state(server, state.model_name, version)
    if seen != "AVAILABLE":
        raise exit_codes.DataError(
            f"TF Serving at {server} reports version {version} {seen}, not AVAILABLE: moving {label} onto it "
            "now would make it refuse the whole config; wait for it to load and run the command again")


def promote(serving_dir: str, version: Optional[int], label: str, server: Optional[str] = None) -> str:
    """`label` onto `version` (default: the canary, to stable); a version the config does not load yet
    is staged first. With server, TF Serving must report the version AVAILABLE before the label moves."""
    def change(state, existing, at):
        target = version if version is not None else state.canary
        if target is not None and target in releases.loaded_versions(state):
            _ensure_available(server, state, target, label)
        state, message, _ = releases.promote(state, version, label, existing, at)
        return state, message
    try:
        return releases.change(serving_dir, change)
    except releases.ReleaseError as e:
        raise exit_codes.DataError(str(e)) from None


def rollback(serving_dir: str, label: str, server: Optional[str] = None) -> str:
    """stable back to the previous stable one, or the canary label removed."""
    def change(state, existing, at):
        if label == releases.STABLE:
            target = releases.rollback_target(state)
            if target is not None:
                _ensure_available(server, state, target, label)
        return releases.rollback(state, label, at)
    try:
        return releases.change(serving_dir, change)
    except releases.ReleaseError as e:
        raise exit_codes.DataError(str(e)) from None


def _card_summary(card: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if card is None:
        return {"accuracy": None, "eval_examples": None, "blessed": None, "edge_pushed": None}
    evaluation = card.get("evaluation") or {}
    gate = (card.get("verdict") or {}).get("edge_gate") or {}
    return {"accuracy": evaluation.get("accuracy"), "eval_examples": evaluation.get("examples"),
            "blessed": (card.get("verdict") or {}).get("blessed"),
            "edge_pushed": sorted(f for f, g in gate.items() if g.get("pushed"))}


def listing(serving_dir: str) -> Dict[str, Any]:
    """The serving dir's versions (newest first) with their labels, card figures and card paths, the
    config file's state, and the recent changes: the --json object of `list`."""
    state = releases.read_state(serving_dir)
    config_state = "missing"
    if os.path.exists(releases.config_path(serving_dir)):
        with open(releases.config_path(serving_dir)) as f:
            text = f.read()
        try:
            parsed = releases.parse_config(text)
            config_state = ("in step with releases.json" if state is not None
                            and parsed == releases.model_server_config(state) else "DIFFERS from releases.json")
        except Exception as e:  # noqa: BLE001 - a hand-edited file: report, do not fail the listing
            config_state = f"not a ModelServerConfig ({type(e).__name__})"
    rows = []
    for version in sorted(releases.version_numbers(serving_dir), reverse=True):
        folder = os.path.join(serving_dir, str(version))
        card = model_card.read_card(folder)
        marker = None
        try:
            with open(os.path.join(folder, names.EXTRA_ASSETS_DIR, pipeline_names.PUSH_SOURCE_FILE)) as f:
                marker = json.load(f)
        except (OSError, ValueError):
            pass
        card_html = os.path.join(folder, names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_HTML)
        rows.append({"version": version,
                     "release": releases.describe(state, version) if state else "no release file",
                     "loaded": version in releases.loaded_versions(state) if state else None,
                     "pushed_at": (marker or {}).get(pipeline_names.PUSH_SOURCE_PUSHED_AT),
                     **_card_summary(card), "card": card_html if os.path.exists(card_html) else None})
    return {"serving_dir": serving_dir, "model_name": state.model_name if state else None,
            "base_path": state.base_path if state else None,
            "stable": state.stable if state else None, "canary": state.canary if state else None,
            "rollback_target": releases.rollback_target(state) if state else None,
            "loaded": releases.loaded_versions(state) if state else None,
            "config": releases.config_path(serving_dir), "config_state": config_state,
            "versions": rows, "events": (state.events[-8:] if state else [])}


def _short(release: str) -> str:
    """A version's label or state in one word or two (releases.describe says more; --json has it)."""
    for word in ("staged", "withdrawn", "rollback target", "not loaded", "no release file"):
        if release.startswith(word):
            return word
    return release


def _number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_listing(result: Dict[str, Any]) -> str:
    """The listing as text: a head line, one row per version, the recent changes."""
    if result["model_name"] is None:
        head = (f"{result['serving_dir']}: no {pipeline_names.RELEASES_FILE} yet (pushed before release control): "
                "TF Serving's default policy serves the newest version; the next push or `promote` starts it")
    else:
        head = (f"{result['model_name']} in {result['serving_dir']}: stable {result['stable'] or 'none'}, canary "
                f"{result['canary'] or 'none'}, rollback target {result['rollback_target'] or 'none'}; TF Serving "
                f"loads {', '.join(map(str, result['loaded'])) or 'nothing'}\n"
                f"config {result['config']} ({result['config_state']}), base_path {result['base_path']}")
    lines = [head, "", f"{'version':<11} {'label':<16} {'loaded':<6} {'pushed (UTC)':<19} {'accuracy':>8} "
                       f"{'eval':>5}  {'gate':<11} {'edge':<13} card"]
    for row in result["versions"]:
        gate = "-" if row["blessed"] is None else ("BLESSED" if row["blessed"] else "NOT BLESSED")
        edge = "-" if row["edge_pushed"] is None else (",".join(row["edge_pushed"]) or "none")
        loaded = "-" if row["loaded"] is None else ("yes" if row["loaded"] else "no")
        eval_images = "-" if row["eval_examples"] is None else str(row["eval_examples"])
        lines.append(f"{row['version']:<11} {_short(row['release']):<16} {loaded:<6} {(row['pushed_at'] or '-')[:19]:<19} "
                     f"{_number(row['accuracy']):>8} {eval_images:>5}  {gate:<11} {edge:<13} "
                     f"{row['card'] or '- (pushed before model cards)'}")
    if result["events"]:
        lines += ["", "recent changes:"]
        for e in result["events"]:
            what = (f"{e['label']}: {e['previous'] if e['previous'] is not None else 'none'} -> "
                    f"{e['version'] if e['version'] is not None else 'none'}" if e["label"] else f"version {e['version']}")
            lines.append(f"  {e['at']}  {e['action']:<8} {what}" + (f" ({e['note']})" if e["note"] else ""))
    return "\n".join(lines)
