"""Level 2: the custom TFX components, each as TFX structures its own (component, executor, driver).

    image_example_gen/     ImageExampleGen: labelled image folders to tf.Examples, every skipped file
                           counted in the ingest report
    curated_schema_gen.py  CuratedSchemaGen: the checked-in schema as the run's Schema artifact
    distribution_validator.py  TFX's DistributionValidator with an optional baseline (drift, skew)
    statistics_resolver.py the statistics of the data that trained the served model (drift baseline)
    data_gate/             DataGate: stops the run before Transform when data validation found anomalies
    label_vetter/          LabelVetter: before training, the latest blessed model scores the new labelled
                           data and stops the run on a class it disagrees with (a label swap)
    baseline_resolver.py   the latest blessed model the Evaluator compares the candidate with
    edge_evaluator/        EdgeEvaluator: the TFLite models scored and gated against the SavedModel
    atomic_pusher/         AtomicPusher: TFX's Pusher, writing each version aside and renaming it into place,
                           with its model card, and recording it in the serving dir's release files
    vertex_pusher/         VertexRegistryPusher: each push a version of one Vertex AI Model, with aliases
                           and a canary share of the endpoint

Imports trainer_module/ and common/ only.
"""


def __getattr__(name: str):
    # A Kubeflow Pipelines v2 container imports a custom artifact type by its type name, which the
    # KFP compiler requires to be "<module>.<Class>": "components.DataValidationResult". Resolved
    # on first use, so importing this package stays free of TFX.
    if name == "DataValidationResult":
        from components.data_gate.component import DataValidationResult
        return DataValidationResult
    if name == "EdgeEvaluation":
        from components.edge_evaluator.component import EdgeEvaluation
        return EdgeEvaluation
    if name == "LabelVettingResult":
        from components.label_vetter.component import LabelVettingResult
        return LabelVettingResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
