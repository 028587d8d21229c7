"""AtomicPusher: TFX's Pusher whose pushes to a serving folder are atomic and recorded once.

  component.py  the component: TFX's Pusher (its spec plus optional edge_evaluation, reference_blessing
                and model card inputs, the same outputs) with the executor below
  executor.py   writes a version (the SavedModel, the TFLite models that passed the edge gate in
                its tflite/ folder, and its model card in assets.extra/) through a hidden partial
                folder and a rename, reuses a version that a push wrote but never recorded, and
                records the push in the serving dir's release files (releases.json, models.config);
                a reference set's blessing is required too when given (ReferenceBlessingCheck)
"""
