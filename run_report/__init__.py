"""The run report: what a pipeline run did and why its model was or was not blessed, read back from
ML Metadata and the artifacts (`python -m run_report OUTPUT_DIR`)."""
