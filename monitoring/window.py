"""The window of prediction logs a monitoring command reads: its flags and their times."""
import argparse
import datetime
from typing import Optional

from common import prediction_log
from run_control.exit_codes import UsageError


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--hours, --since, --until."""
    parser.add_argument("--hours", type=float, default=24.0,
                        help="the window: the last N hours before --until (default: %(default)s; 0: all)")
    parser.add_argument("--since", help="the window's start, ISO 8601 (UTC unless a zone is given)")
    parser.add_argument("--until", help="the window's end, ISO 8601 (default: now)")


def _time(flag: str, text: Optional[str]) -> Optional[datetime.datetime]:
    try:
        return prediction_log.parse_time(text) if text else None
    except ValueError as e:
        raise UsageError(f"--{flag} {text!r}: not an ISO 8601 time ({e}); e.g. 2026-12-07T09:00") from e


def window(args: argparse.Namespace):
    """(since, until, words) of the window the flags ask for; None: open at that end."""
    until = _time("until", args.until)
    since = _time("since", args.since)
    if since is None and args.hours > 0:
        since = (until or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(hours=args.hours)
    words = f"{since.isoformat() if since else 'the first record'} to {until.isoformat() if until else 'now'}"
    return since, until, words
