"""Feature keys of the raw examples (written by ImageExampleGen) and of the transformed features."""

# Raw features (see components/image_example_gen.py).
IMAGE_KEY = "image"
LABEL_KEY = "label"
CLASS_NAME_KEY = "class_name"

# Transformed features (outputs of preprocessing_fn).
TRANSFORMED_IMAGE_KEY = "image_resized"
TRANSFORMED_LABEL_KEY = "label"
TRANSFORMED_ONE_HOT_KEY = "label_one_hot"

# Serving signature names and tensors.
SERVING_BYTES_SIGNATURE = "serving_default"
SERVING_EXAMPLES_SIGNATURE = "serving_examples"
SERVING_BYTES_INPUT = "image_bytes"
PROBABILITIES_OUTPUT = "probabilities"
