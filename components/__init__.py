"""Custom TFX components: ImageExampleGen (labelled image folders to tf.Examples, with a counted
report of skipped files) and the resolver of the baseline model the Evaluator compares against."""
