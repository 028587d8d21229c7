"""The machine and the process a measurement ran on: the machine line, the command header, CPU and memory use.

Reads /proc and nvidia-smi only (no TensorFlow import), so it works wherever Python does.
"""
import os
import platform
import resource
import shlex
import subprocess
import sys
from typing import Sequence


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), which can be fewer than os.cpu_count()."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_gib() -> float:
    """MemTotal of /proc/meminfo in GiB (nan where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def gpus() -> str:
    """GPU names and memory from nvidia-smi; 'none' when there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0 and lines:
            return "; ".join(lines)
    except (OSError, subprocess.SubprocessError):
        pass
    return "none"


def machine_line() -> str:
    """Cores, CPU model, memory, GPU, load average: the context every number needs."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"machine: {usable_cores()} usable cores ({os.cpu_count()} online), {cpu_model()}, "
            f"{mem_total_gib():.1f} GiB RAM, GPU: {gpus()}, load average at start "
            f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, Python {platform.python_version()}")


def command_line(module: str, argv: Sequence[str]) -> str:
    """The bench's command as it can be re-run from the repository root."""
    python = sys.executable
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    return " ".join(shlex.quote(a) for a in [python, "-m", module, *argv])


def git_commit() -> str:
    """The repository's HEAD commit, "+ uncommitted changes" when tracked files differ ("unknown" outside git)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def print_header(module: str, title: str, argv: Sequence[str]) -> None:
    """Prints the title, the command, the commit, the machine line and TensorFlow's version and threads."""
    print(f"== {module}: {title}", flush=True)
    print(f"command: {command_line(module, argv)}")
    print(f"commit: {git_commit()}")
    print(machine_line())
    try:
        import tensorflow as tf
    except ImportError:
        tf = None
    if tf is not None:
        print(f"tensorflow {tf.__version__}; TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')}; "
              f"inter/intra-op threads {tf.config.threading.get_inter_op_parallelism_threads()}/"
              f"{tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores)")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """CPU seconds of this process so far (all threads, user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """This process's peak RSS so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
