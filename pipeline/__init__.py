"""Level 3: the pipeline, as TFX templates lay it out: the DAG and everything it is configured by.

    pipeline.py         create_pipeline(config, training, platform), read top to bottom like the graph
    configs.py          every knob of the pipeline (PipelineConfig) and the cluster (VertexConfig)
    recipes.py          named training recipes (--recipe)
    flags.py            the runners' flags and settings, generated from the configs
    evaluation.py       the Evaluator's TFMA config: the metrics users read and the gate's thresholds
    data_validation.py  the statistics options and the DistributionValidators (drift, skew)
    schema/             the curated schema: the data contract, kept in the repo
    kubeflow.py         the pipeline on a cluster: its Platform and the compiled PipelineJob
"""
