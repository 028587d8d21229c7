"""After the push: the prediction logs compared with the served model's training data
(`python -m monitoring`: drift, confidence and failures, an HTML page, an exit code), and the
labelling queue (`python -m monitoring.labelling_queue`). Level 5: reads runs (ML Metadata) and the logs
that serving_client writes (common/prediction_log.py). docs/monitoring.md.
"""
