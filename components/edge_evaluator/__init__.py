"""EdgeEvaluator: the TFLite models scored like the SavedModel, and the edge gate that decides which
of them the AtomicPusher pushes beside it.

  component.py  the component, its spec and its EdgeEvaluation artifact
  executor.py   scores the SavedModel (serving_examples) and each TFLite flavour (the interpreter, on
                the Transform graph's pixels) on the same eval images; size and CPU latency
  gate.py       accuracy and per-class recall from predictions, the margins, each flavour's verdict
                in words (no TensorFlow: the Pusher and the tests read it)
"""
