"""Level 5: release control of pushed models: which version is `stable`, which is the `canary`,
moving them, and going back (`python -m releases list|promote|rollback TARGET`).

    __main__.py  the command line: TARGET is a local serving dir (or the pipeline's output dir) or a
                 Vertex AI model (projects/P/locations/R/models/ID)
    local.py     a serving dir: the versions with their labels, verdicts and model cards, the
                 changes (common/releases.py writes releases.json and TF Serving's models.config),
                 and TF Serving's model status for --server
    vertex.py    a Vertex AI model: its registry versions, aliases and endpoint traffic
                 (components/vertex_pusher/registry.py makes the calls)
"""
