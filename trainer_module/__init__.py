"""Transform and Trainer code for the pipeline (TFX packages this folder as the user module).

TF Transform and TFMA need Keras 2: tf_keras is selected before TensorFlow loads.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
