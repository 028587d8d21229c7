"""The pipeline's DAG and its knobs: configs.py (every knob, with its meaning), pipeline.py
(create_pipeline, read top to bottom like the graph), evaluation.py (TFMA metrics and gate) and
flags.py (the runners' flags, generated from the configs)."""
