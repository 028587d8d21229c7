"""Writes the run report of one run: report.html and its figures as PNG files beside it."""
import os
import re
from typing import Optional

import tensorflow as tf

from run_report import html_page, run_data, tensorboard_scalars

REPORT_FILE = "report.html"
REPORTS_DIR = "reports"  # under the pipeline root, one folder per run


def default_out_dir(data: run_data.RunData) -> str:
    """<pipeline root>/reports/<run id, with characters unsafe in a file name replaced>."""
    if not data.root:
        raise ValueError("cannot locate the pipeline root of this run; pass out_dir")
    return os.path.join(data.root, REPORTS_DIR, re.sub(r"[^A-Za-z0-9._-]", "-", data.run_id))


def _check_not_in_data(out_dir: str, data: run_data.RunData) -> None:
    """Input data stays read-only: refuses an out_dir inside the run's (local) data root."""
    data_root = data.ingest.data_root if data.ingest else None
    if data_root and "://" not in data_root:
        data_root, out = os.path.abspath(data_root), os.path.abspath(out_dir)
        if os.path.commonpath([data_root, out]) == data_root:
            raise ValueError(f"refusing to write the report inside the input data {data_root}")


def write_report(metadata_path: str, out_dir: Optional[str] = None, run_id: Optional[str] = None) -> str:
    """Writes report.html and its PNGs for one run (default: the latest); returns the HTML path.

    out_dir defaults to <pipeline root>/reports/<run id>. Also (re)writes the run's Evaluator
    metrics as TensorBoard scalars beside its Trainer's logs (tensorboard_scalars).
    """
    data = run_data.collect(metadata_path, run_id)
    out_dir = out_dir or default_out_dir(data)
    _check_not_in_data(out_dir, data)
    page, figures = html_page.render(data)
    tf.io.gfile.makedirs(out_dir)
    for name, png in figures.items():
        with tf.io.gfile.GFile(os.path.join(out_dir, name), "wb") as f:
            f.write(png)
    path = os.path.join(out_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path + ".partial", "w") as f:  # whole or absent: a reader never sees half a page
        f.write(page)
    tf.io.gfile.rename(path + ".partial", path, overwrite=True)
    tensorboard_scalars.write_evaluator_scalars(data)
    return path
