"""Child processes a test stops with Ctrl-C (SIGINT)."""
import signal


def default_sigint() -> None:
    """Popen's preexec_fn: SIGINT back to its default in the child. A shell starts a background job
    (`cmd &`, nohup) with SIGINT ignored and its children inherit that; Python then installs no
    KeyboardInterrupt handler, and the test's Ctrl-C would be ignored, not tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
