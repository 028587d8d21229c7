"""Release control of a local serving dir: which pushed versions TF Serving loads, and which carry the
version labels `stable` and `canary`. Two files beside the version folders:

    releases.json   the state, the one source of truth: the labels, every version that was stable
                    (newest last: what rollback goes back along), versions loaded without a label
                    (staged), versions rolled back (withdrawn), and every change with its time
    models.config   TF Serving's ModelServerConfig text proto, written from the state on every change
                    (TF Serving's own message, tensorflow_serving.config.model_server_config_pb2):
                    one model, its base_path, model_version_policy `specific` (the loaded versions)
                    and version_labels

TF Serving reads models.config again every --model_config_file_poll_wait_seconds (docs/serving.md
has the docker flags). Its rule for labels (ServerCore::UpdateModelVersionLabelMap in TF Serving
2.16): a label that already points at a version may only be moved onto a version that is loaded
and AVAILABLE, else the whole new config is refused and the server keeps the old one; a label that
does not exist yet may point at a version still loading when the server runs with
--allow_version_labels_for_unavailable_models. Hence the policy here:

  * loaded = stable, canary, the rollback target (the stable before the current one) and staged
    versions (at most the newest push beside the canary, and one pending per label: at most six in
    all): promoting the canary and rolling back move a label only onto a version the previous
    config already loaded;
  * a push becomes `stable` when there is none, else `canary` when there is none (new labels),
    else it is staged (loaded, no label) beside the canary, and `promote V --label canary` moves
    the label once the server has loaded it;
  * promoting a version that is not loaded stages it; the same command again moves the label
    (`releases promote --server URL` checks with TF Serving that it is AVAILABLE first).

Requests that name no version or label get TF Serving's newest loaded version (its rule); clients
that want the stable model ask for `/v1/models/<name>/labels/stable`. TF Serving splits no traffic
between labels: a canary share is the client's or a proxy's choice.

Every change runs under an exclusive lock of the serving dir (flock on .releases.lock, dropped by
the kernel when the process dies), reads the state, and writes releases.json then models.config,
each atomically (a temporary file, fsync, rename): a push and a command never interleave, and a
crash leaves the old or the new file, never half of one. models.config is rewritten from the state
by every change, so a crash between the two files is repaired by the next one.
"""
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from common import durable, pipeline_names

STABLE = "stable"
CANARY = "canary"
LABELS = (STABLE, CANARY)
STATE_FORMAT = 1
LOCK_FILE = ".releases.lock"
DEFAULT_BASE_PATH = "/models/{model_name}"  # where TF Serving's docker image expects a model
_STAGED_PUSH = "pushed while a canary was out"


class ReleaseError(ValueError):
    """A release change that cannot be made (an unknown version, nothing to roll back to)."""


@dataclasses.dataclass
class ReleaseState:
    """releases.json: the labels and what a rollback goes back along."""
    model_name: str
    base_path: str
    labels: Dict[str, Optional[int]] = dataclasses.field(default_factory=lambda: {STABLE: None, CANARY: None})
    stable_history: List[int] = dataclasses.field(default_factory=list)  # every stable, newest (the current) last
    staged: Dict[str, str] = dataclasses.field(default_factory=dict)  # version -> why it is loaded without a label
    withdrawn: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)  # version -> {at, label}
    events: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # every change, oldest first
    format: int = STATE_FORMAT

    @property
    def stable(self) -> Optional[int]:
        return self.labels.get(STABLE)

    @property
    def canary(self) -> Optional[int]:
        return self.labels.get(CANARY)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ReleaseState":
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def version_numbers(serving_dir: str) -> List[int]:
    """The numeric version folders, oldest first (what TF Serving can load)."""
    if not os.path.isdir(serving_dir):
        return []
    return sorted(int(n) for n in os.listdir(serving_dir)
                  if n.isdigit() and os.path.isdir(os.path.join(serving_dir, n)))


def rollback_target(state: ReleaseState) -> Optional[int]:
    """The stable before the current one (None when there is none)."""
    earlier = [v for v in state.stable_history[:-1] if v != state.stable and str(v) not in state.withdrawn]
    return earlier[-1] if earlier else None


def loaded_versions(state: ReleaseState) -> List[int]:
    """The versions models.config makes TF Serving load: the labelled ones, the rollback target and
    the staged ones."""
    loaded = {v for v in state.labels.values() if v is not None} | {int(v) for v in state.staged}
    target = rollback_target(state)
    if target is not None:
        loaded.add(target)
    return sorted(loaded)


def model_server_config(state: ReleaseState):
    """TF Serving's ModelServerConfig for the state."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = state.model_name
    model.base_path = state.base_path
    model.model_platform = "tensorflow"
    model.model_version_policy.specific.versions.extend(loaded_versions(state))
    for label in LABELS:
        if state.labels.get(label) is not None:
            model.version_labels[label] = state.labels[label]
    return config


def config_text(state: ReleaseState) -> str:
    """models.config's text: a comment naming its writer, then the ModelServerConfig text proto."""
    from google.protobuf import text_format

    return ("# Written by intel-scenes-tfx (common/releases.py) from releases.json on every push, promote and\n"
            "# rollback; edit with `python -m releases`, not by hand. TF Serving reads it with\n"
            "# --model_config_file and polls it (--model_config_file_poll_wait_seconds).\n"
            + text_format.MessageToString(model_server_config(state)))


def parse_config(text: str):
    """A models.config text as TF Serving reads it (a ModelServerConfig); ParseError when it is not one."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


# ---------------------------------------------------------------- changes (pure: state in, state out)

def _event(state: ReleaseState, action: str, version: Optional[int], label: Optional[str],
           previous: Optional[int], at: str, note: str = "") -> None:
    state.events.append({"at": at, "action": action, "version": version, "label": label,
                         "previous": previous, "note": note})


def initial_state(model_name: str, base_path: str, existing: List[int], at: str) -> ReleaseState:
    """The state of a serving dir without releases.json: the newest existing version, which TF
    Serving's default policy was serving, is adopted as stable."""
    state = ReleaseState(model_name=model_name, base_path=base_path)
    if existing:
        adopted = max(existing)
        state.labels[STABLE] = adopted
        state.stable_history.append(adopted)
        _event(state, "adopt", adopted, STABLE, None, at, "the newest version when release control began")
    return state


def register_push(state: ReleaseState, version: int, at: str) -> Tuple[ReleaseState, str]:
    """A new version from the Pusher: stable if there is none, else canary if there is none, else
    staged. A version already known (a rerun that reuses an unrecorded push) changes nothing."""
    known = set(state.labels.values()) | {int(v) for v in state.staged} | set(state.stable_history)
    if version in known:
        return state, f"version {version} is already registered ({describe(state, version)})"
    if state.stable is None:
        state.labels[STABLE] = version
        state.stable_history.append(version)
        _event(state, "push", version, STABLE, None, at)
        return state, f"version {version} is {STABLE} (the first release)"
    if state.canary is None:
        state.labels[CANARY] = version
        _event(state, "push", version, CANARY, None, at)
        return state, f"version {version} is {CANARY}; {STABLE} stays {state.stable}"
    # The newest blessed push supersedes one staged before it (bounded: the loaded set stays small).
    state.staged = {v: why for v, why in state.staged.items() if why != _STAGED_PUSH}
    state.staged[str(version)] = _STAGED_PUSH
    _event(state, "push", version, None, None, at, f"staged: {CANARY} is {state.canary}")
    return state, (f"version {version} is loaded without a label ({CANARY} stays {state.canary}: TF Serving moves "
                   f"a label only onto a loaded version); `python -m releases promote {version} --label {CANARY}` "
                   "once TF Serving has loaded it")


def promote(state: ReleaseState, version: Optional[int], label: str, existing: List[int], at: str
            ) -> Tuple[ReleaseState, str, bool]:
    """Moves `label` onto `version` (default: the canary, for `stable`). Returns (state, message,
    moved): a version the current config does not load is staged instead (moved False)."""
    if label not in LABELS:
        raise ReleaseError(f"unknown label {label!r}: use {' or '.join(LABELS)}")
    if version is None:
        if label != STABLE or state.canary is None:
            raise ReleaseError(f"nothing to promote: name a version (there is no {CANARY})" if label == STABLE
                               else f"name the version to label {label}")
        version = state.canary
    if version not in existing:
        raise ReleaseError(f"version {version} is not in the serving dir (versions: "
                           f"{', '.join(map(str, existing)) or 'none'})")
    if state.labels.get(label) == version:
        return state, f"version {version} is already {label}", False
    if version not in loaded_versions(state):
        # One pending version per label: staging another replaces it (the loaded set stays small).
        state.staged = {v: why for v, why in state.staged.items() if why != f"to be {label}"}
        state.staged[str(version)] = f"to be {label}"
        _event(state, "stage", version, label, None, at, f"to be {label} once TF Serving has loaded it")
        return state, (f"version {version} was not loaded: staged now; run the same command again once TF "
                       f"Serving has loaded it (TF Serving moves the {label} label only onto a loaded version)"), False
    previous = state.labels.get(label)
    state.staged.pop(str(version), None)
    state.withdrawn.pop(str(version), None)
    if label == STABLE:
        if state.canary == version:
            state.labels[CANARY] = None
        state.labels[STABLE] = version
        state.stable_history.append(version)
    else:
        if state.stable == version:
            raise ReleaseError(f"version {version} is {STABLE}; a canary must be another version")
        state.labels[CANARY] = version  # the canary it replaces is no longer loaded
    _event(state, "promote", version, label, previous, at)
    return state, f"{label}: {previous if previous is not None else 'none'} -> {version}", True


def rollback(state: ReleaseState, label: str, at: str) -> Tuple[ReleaseState, str]:
    """stable: back to the stable before it (loaded as the rollback target); the version left is
    withdrawn. canary: the canary label is removed and its version withdrawn."""
    if label == CANARY:
        canary = state.canary
        if canary is None:
            raise ReleaseError(f"there is no {CANARY} to roll back")
        state.labels[CANARY] = None
        state.withdrawn[str(canary)] = {"at": at, "label": CANARY}
        _event(state, "rollback", None, CANARY, canary, at)
        return state, f"{CANARY}: {canary} -> none ({canary} withdrawn; {STABLE} stays {state.stable})"
    if label != STABLE:
        raise ReleaseError(f"unknown label {label!r}: use {' or '.join(LABELS)}")
    target, current = rollback_target(state), state.stable
    if target is None:
        raise ReleaseError(f"nothing to roll back to: version {current} is the only {STABLE} there has been"
                           if current is not None else f"there is no {STABLE} version")
    state.labels[STABLE] = target
    state.withdrawn[str(current)] = {"at": at, "label": STABLE}
    # The withdrawn version leaves the history, so a second rollback goes further back.
    state.stable_history = [v for v in state.stable_history if v != current]
    _event(state, "rollback", target, STABLE, current, at)
    return state, f"{STABLE}: {current} -> {target} ({current} withdrawn)"


def describe(state: Optional[ReleaseState], version: int) -> str:
    """What the state says of a version: its labels, or why it is (not) loaded."""
    if state is None:
        return "-"
    labels = [label for label in LABELS if state.labels.get(label) == version]
    if labels:
        return ", ".join(labels)
    if str(version) in state.staged:
        return f"staged: loaded without a label ({state.staged[str(version)]})"
    if version == rollback_target(state):
        return "rollback target (loaded)"
    if str(version) in state.withdrawn:
        return f"withdrawn ({state.withdrawn[str(version)]['at']})"
    return "not loaded"


# ---------------------------------------------------------------- files

def state_path(serving_dir: str) -> str:
    return os.path.join(serving_dir, pipeline_names.RELEASES_FILE)


def config_path(serving_dir: str) -> str:
    return os.path.join(serving_dir, pipeline_names.MODEL_CONFIG_FILE)


def read_state(serving_dir: str) -> Optional[ReleaseState]:
    """The state, or None when the dir has no releases.json (pushed before release control)."""
    try:
        with open(state_path(serving_dir)) as f:
            return ReleaseState.from_json(f.read())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise ReleaseError(f"{state_path(serving_dir)} is damaged ({e}); restore it from a backup, or move it "
                           "aside to start release control afresh from the newest version") from None


def write(serving_dir: str, state: ReleaseState) -> None:
    """releases.json, then models.config from it, each atomically."""
    durable.write_atomically(state_path(serving_dir), state.to_json() + "\n")
    durable.write_atomically(config_path(serving_dir), config_text(state))


@contextlib.contextmanager
def locked(serving_dir: str) -> Iterator[None]:
    """An exclusive lock of the serving dir's release files (blocks while another holds it)."""
    fd = os.open(os.path.join(serving_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def change(serving_dir: str, fn: Callable[[ReleaseState, List[int], str], Tuple[ReleaseState, str]],
           model_name: Optional[str] = None, base_path: Optional[str] = None, new_version: Optional[int] = None) -> str:
    """Runs fn(state, versions on disk, time) -> (state, message) under the lock and writes both files;
    returns the message. A serving dir without releases.json starts from initial_state (model_name:
    the dir's name by default; base_path: DEFAULT_BASE_PATH), adopting its newest version other
    than new_version (the push being recorded)."""
    with locked(serving_dir):
        at, existing = now_iso(), version_numbers(serving_dir)
        state = read_state(serving_dir)
        if state is None:
            name = model_name or os.path.basename(os.path.normpath(serving_dir))
            state = initial_state(name, base_path or DEFAULT_BASE_PATH.format(model_name=name),
                                  [v for v in existing if v != new_version], at)
        state, message = fn(state, existing, at)
        write(serving_dir, state)
        return message


def record_push(serving_dir: str, version: int, model_name: Optional[str] = None,
                base_path: Optional[str] = None) -> str:
    """The Pusher's step after a version is in place: registers it and rewrites both files; returns
    what changed, in words. model_name and base_path are kept in the state from the first push on."""
    return change(serving_dir, lambda state, existing, at: register_push(state, version, at),
                  model_name, base_path, new_version=version)
