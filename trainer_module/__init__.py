"""Transform and Trainer code for the pipeline: TFX packages this folder as the user module.

TFX hashes every .py file here for the Transform and Trainer cache (an edit here re-runs both) and
ships them in a wheel as top-level modules (`names`, `model`, `trainer`, ...), installed at the END
of sys.path. It imports only the entry modules (`preprocessing`, `trainer`) by those bare names;
everything else is imported through this package (`from trainer_module import ...`), never as a
bare sibling, and no other importable module shares a name with a file here
(tests/test_user_module_wheel.py checks both), so the top-level copies cannot shadow or be shadowed.

TF Transform and TFMA need Keras 2: tf_keras is selected before TensorFlow loads.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
