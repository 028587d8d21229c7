"""Which pushed version is `stable`, which is the `canary`; move them, go back, list them.

    python -m releases list TARGET [--json]
    python -m releases promote TARGET [VERSION] [--label stable|canary]
    python -m releases rollback TARGET [--label stable|canary]

TARGET is a serving dir (or the pipeline's output dir: its serving_model/<name>), or a Vertex AI
model, projects/PROJECT/locations/REGION/models/MODEL_ID (with --endpoint for its traffic).

Serving dir: the labels live in releases.json, and TF Serving's models.config (version_labels,
and the loaded versions) is rewritten from it on every change; TF Serving picks it up at its next
poll (docs/serving.md has the docker flags). promote moves `stable` (default) onto VERSION (default:
the canary) or `canary` onto VERSION; a version TF Serving does not load yet is staged first, and
the same command again moves the label (--server URL checks with TF Serving that it is AVAILABLE).
rollback moves `stable` back to the stable before it (withdrawing the current one), or removes the
`canary` label (--label canary). list shows each version with its label, push time, accuracy,
gate verdict, pushed edge models and model card.

Vertex AI: the labels are version aliases of the model in the Model Registry; with --endpoint,
promote sends 100 % of the traffic to the new stable (a canary gets --canary-traffic-percent) and
rollback sends it back (registry.py in components/vertex_pusher/).

Exit codes (run_control.exit_codes): 0 done; 1 the change cannot be made (unknown version, nothing
to roll back to, a version TF Serving has not loaded, Vertex AI refused); 2 usage (no serving dir at
the path, a bad argument, no credentials for Vertex AI).
"""

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import List, Optional  # noqa: E402

from common import releases as release_state  # noqa: E402
from pipeline.configs import VertexConfig  # noqa: E402
from run_control import exit_codes  # noqa: E402


def _version(text: str) -> str:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number")
    return text


def _percent(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole percent in [0, 100]")
    return int(text)


def parser() -> argparse.ArgumentParser:
    main = exit_codes.ArgumentParser(prog="python -m releases", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "the versions, their labels, verdicts and cards"),
                            ("promote", "move stable (or --label canary) onto a version"),
                            ("rollback", "stable back to the previous stable; --label canary: drop the canary")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("target", help="serving dir, pipeline output dir, or projects/P/locations/R/models/ID")
        if name == "promote":
            command.add_argument("version", nargs="?", type=_version, help="default: the canary")
        if name != "list":
            command.add_argument("--label", choices=release_state.LABELS, default=release_state.STABLE)
            command.add_argument("--server", help="TF Serving's REST address (http://host:8501): the version a "
                                                  "label moves onto must be AVAILABLE there")
        else:
            command.add_argument("--json", action="store_true", help="print one JSON object")
        command.add_argument("--pipeline-name", help="which serving dir of an output dir holding several")
        command.add_argument("--endpoint", default="", help="Vertex AI: the endpoint (display name, ID or "
                                                            "resource name) whose traffic follows the labels")
        if name == "promote":
            command.add_argument("--canary-traffic-percent", type=_percent, default=VertexConfig().canary_traffic_percent,
                                 help="Vertex AI endpoint: the canary's share of the traffic")
    return main


def _run(args) -> str:
    if args.target.startswith("projects/"):
        from releases import vertex

        target = vertex.target_of(args.target, args.endpoint)
        if args.command == "list":
            result = vertex.listing(target)
            return json.dumps(result, indent=1) if args.json else vertex.format_listing(result)
        if args.command == "promote":
            return vertex.promote(target, args.version, args.label, args.canary_traffic_percent)
        return vertex.rollback(target, args.label)

    from releases import local

    serving_dir = local.find_serving_dir(args.target, args.pipeline_name)
    if args.command == "list":
        result = local.listing(serving_dir)
        return json.dumps(result, indent=1) if args.json else local.format_listing(result)
    if args.command == "promote":
        message = local.promote(serving_dir, int(args.version) if args.version else None, args.label, args.server)
    else:
        message = local.rollback(serving_dir, args.label, args.server)
    state = release_state.read_state(serving_dir)
    return (f"{message}\n{release_state.config_path(serving_dir)}: TF Serving loads "
            f"{', '.join(map(str, release_state.loaded_versions(state)))}; stable {state.stable or 'none'}, "
            f"canary {state.canary or 'none'}")


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: prints the result; one line on stderr and exit 1 or 2 on an error."""
    args = parser().parse_args(argv)
    try:
        try:
            print(_run(args))
        except release_state.ReleaseError as exc:  # a damaged releases.json, a change that cannot be made
            raise exit_codes.DataError(str(exc)) from exc
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure: one line, a documented code
        return exit_codes.fail(exc)
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
