"""The data layout every level shares: the split names of the Examples artifact, the folder names
a labelled image folder's splits go by, and the default label space.

ImageExampleGen reads `<root>/<split folder>/<class>/<file>` (or `<root>/<class>/<file>`, split by
a hash of the path); the demo dataset and the labelling queue write that layout.
"""

# The Examples artifact's splits (TFX's Trainer and Evaluator defaults).
TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)

# Folder names recognised as splits, in order of preference when several eval folders exist.
TRAIN_DIR_NAMES = ("train", "seg_train")
EVAL_DIR_NAMES = ("val", "validation", "eval", "test", "seg_test")
# Folders that hold unlabelled images: never read as a class or a split. The first is the one
# this project writes (the demo dataset, the labelling queue).
UNLABELLED_DIR_NAMES = ("unlabeled", "unlabelled", "pred", "seg_pred", "predict")

# The default label space: the Intel Image Classification scenes.
INTEL_CLASS_NAMES = ("buildings", "forest", "glacier", "mountain", "sea", "street")
