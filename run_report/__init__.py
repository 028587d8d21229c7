"""Level 5: the run report: what a pipeline run did and why its model was or was not blessed, read back
from ML Metadata (common/store.py) and the artifacts (`python -m run_report OUTPUT_DIR`;
`writer.write_report` in code). TFMA's results are read by common/tfma_results.py, which the
model card shares.

    run_data.py      everything one report shows, gathered from ML Metadata and the artifacts
    data_validation.py  the Data section's validation part: the gate's verdict, findings, distributions
    tables.py        numbers derived for the tables (class rows, macro F1, overall rows)
    label_vetting.py the Label vetting section: the served model's agreement with the new labels, per class
    edge_models.py   the Edge models (TFLite) section: the EdgeEvaluator's comparison, the edge gate
    plots.py         the figures, as PNG bytes
    html_page.py     the page: sections, tables and embedded figures
    writer.py        write_report: report.html and its PNGs on disk
    tensorboard_scalars.py  the Evaluator's metrics as TensorBoard scalars beside the Trainer's logs
    __main__.py      the command line
    lineage.py       what produced a pushed model (python -m run_report.lineage OUTPUT_DIR)
"""
import os

# TFMA needs Keras 2: set before any module of the package loads TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
