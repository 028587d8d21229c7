"""VertexRegistryPusher: a blessed model becomes a version of one Model in the Vertex AI Model Registry
(its parent model), with a model card, the release aliases and a canary share of an endpoint.

  component.py  the component: the AtomicPusher's spec (model, blessing and the model card's inputs)
                with the executor below; it replaces TFX's Vertex Pusher, which uploads each push as
                a new Model without a parent
  executor.py   copies the model and its card to the PushedModel's folder, uploads it as a version,
                deploys it to the endpoint with the canary traffic share
  registry.py   the Model Registry and endpoint operations (google-cloud-aiplatform, REST), shared by
                the executor and `python -m releases` (promote, rollback, list on Vertex AI)
"""
