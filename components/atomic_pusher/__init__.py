"""AtomicPusher: TFX's Pusher whose pushes to a serving folder are atomic and recorded once.

  component.py  the component: TFX's Pusher (its spec plus optional edge_evaluation and
                reference_blessing inputs, the same outputs) with the executor below
  executor.py   writes a version (the SavedModel, and the TFLite models that passed the edge gate
                in its tflite/ folder) through a hidden partial folder and a rename, and reuses a
                version that a push wrote but never recorded; a reference set's blessing is
                required too when given (ReferenceBlessingCheck)
  vertex_pusher.py  TFX's Vertex AI endpoint Pusher with the same reference_blessing input
"""
