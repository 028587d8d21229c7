"""Custom TFX components: ImageExampleGen (labelled image folders to tf.Examples, with a counted
report of skipped files), the resolver of the baseline model the Evaluator compares against, and
AtomicPusher (the standard Pusher, writing each version aside and renaming it into place)."""
