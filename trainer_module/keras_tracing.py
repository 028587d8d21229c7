"""AutoGraph leaves Keras' own code unconverted, as TensorFlow means it to.

A tf.function converts, with AutoGraph, every Python function it calls, except those of the packages
TensorFlow's conversion rules name (tensorflow, keras, numpy, ...). Keras 2 is the package `tf_keras`
since TensorFlow 2.16, and TensorFlow 2.16's rules do not name it: every trace of a tf_keras model
then converts Keras' layers, losses, metrics and optimizer source, function by function. On 2 CPU
cores that was most of each Trainer start (a MobileNetV3 Small training step traced in 22 s, 3 s
with the rule; the first forward pass in 38 s, 0.7 s). Keras 2 is written to run unconverted: under
its earlier name `keras` the rule `DoNotConvert("keras")` always left it so. This module adds the
same rule for `tf_keras`. The functions a tf.function is given are still converted, and so is the
project's own code (augmentation, schedules, its layers).

TensorFlow has no public setting for a package's rule; its own converter tests prepend rules to
`autograph.core.config.CONVERSION_RULES` the same way (the stack is pinned: TensorFlow 2.16.2).
tests/test_trainer_module.py checks that a tf_keras function is left unconverted.
"""
from tensorflow.python.autograph.core import config as _autograph_config

KERAS_PACKAGE = "tf_keras"


def leave_keras_unconverted() -> None:
    """Adds AutoGraph's DoNotConvert rule for tf_keras (once; later calls change nothing)."""
    rules = _autograph_config.CONVERSION_RULES
    if not any(isinstance(rule, _autograph_config.DoNotConvert) and rule.matches(KERAS_PACKAGE) for rule in rules):
        _autograph_config.CONVERSION_RULES = (_autograph_config.DoNotConvert(KERAS_PACKAGE), *rules)
