"""Custom TFX components: ImageExampleGen (labelled image folders to tf.Examples, with a counted
report of skipped files), the resolver of the baseline model the Evaluator compares against,
AtomicPusher (the standard Pusher, writing each version aside and renaming it into place), and the
data validation's: CuratedSchemaGen, the drift baseline's resolver, DistributionValidator and the
DataGate; and the EdgeEvaluator (TFLite models scored and gated against the SavedModel)."""


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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
