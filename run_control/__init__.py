"""Level 4: what a command-line run needs around its work.

    command_line.py   the local run's flags, settings and recipe (parsed without TFX or TensorFlow)
    local_run.py      one local run: run lock, recovery, data, LocalDagRunner, closing summary
    exit_codes.py     the exit codes, and the one line each failure gets
    lock.py           one run per output dir at a time
    recovery.py       cleaning up after a run that was killed
    console.py        what the console shows, what only the log file gets
    figures.py        the key figures of a finished component, for its progress line
    startup.py        a quiet start: the libraries' start-up output goes to the log
    environment.py    re-running an entry point under the project's .venv
    schema_update.py  python -m run_control.schema_update: propose a schema from a run's statistics
"""
