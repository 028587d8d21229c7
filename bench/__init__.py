"""Benchmarks of the data path and the whole pipeline (measurements, not tests).

Run each from the repository root as a module, e.g. `.venv/bin/python -m bench.transform_throughput`;
bench/README.md says what each measures, bench/RESULTS.md holds every measured result.

Shared helpers, one concept each: machine (the machine line, command header, CPU and memory use),
tables (markdown tables, number formats), workdir (output folders, disk sizes), raw_examples (image
folders to ImageExampleGen's records), transform_runs (tf.Transform through Beam, the Trainer's
Transform layer), timers (training and input-pipeline timers).
"""
import os

# Before TensorFlow loads (the package is imported before any script): TF Transform needs Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
