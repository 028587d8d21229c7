r"""Score served models on a pool of labelled images: accuracy with its standard error, per-class
recall and, for two or more models, the paired difference to the first with its paired error.

Each --model is what serving_client.predict takes: a serving dir (its highest version), a version
dir, a Trainer Model artifact, or a .tflite file. Each goes through the same path as a client:
the encoded bytes into the serving signature (or the TFLite model's own preprocessing), so the
score is the served model's, preprocessing and test-time flip included. The pool is every image
in the class folders of each --images folder (the class is the folder name), e.g. the held-back
pool of bench/holdout_split.py.

    .venv/bin/python -m bench.score_pool --model OUT/serving_model/intel-scenes --images /tmp/intel-holdout/holdout
    .venv/bin/python -m bench.score_pool --model OLD/serving_model/intel-scenes --model NEW/serving_model/intel-scenes \
        --images /tmp/intel-holdout/holdout --images /tmp/intel-holdout/val
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import List, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from bench import machine, tables  # noqa: E402
from bench.recipe_study import accuracy_with_se, paired_difference, per_class_recall  # noqa: E402


def labelled_images(folders: List[str]) -> Tuple[List[str], List[str]]:
    """(paths, class names) of every image in each folder's class folders (sorted)."""
    from serving_client import predict

    paths, classes = [], []
    for folder in folders:
        for cls in sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))):
            found = predict.list_images([os.path.join(folder, cls)]).files
            paths += found
            classes += [cls] * len(found)
    return paths, classes


def load(model: str):
    """(object to keep alive, serving_default-like signature) of a SavedModel or a .tflite file."""
    from common import tflite_classifier
    from serving_client import predict
    from trainer_module import image_format

    if predict.is_tflite(model):
        classifier = tflite_classifier.TFLiteClassifier(model)
        return classifier, predict.tflite_signature(classifier, image_format.DEFAULT_MAX_IMAGE_PIXELS)
    return predict.load_signature(model)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.score_pool", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="served model (repeatable; the first is "
                                                                    "the reference of the paired differences)")
    p.add_argument("--images", action="append", required=True, help="folder of class folders (repeatable)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    machine.print_header("bench.score_pool", "served models on a labelled pool", argv)
    from serving_client import predict

    paths, classes = labelled_images(args.images)
    class_names = sorted(set(classes))
    labels = np.array([class_names.index(c) for c in classes])
    print(f"pool: {len(paths)} images from " + ", ".join(args.images)
          + ": " + ", ".join(f"{c} {classes.count(c)}" for c in class_names), flush=True)
    rows, correct = [], []
    for model in args.model:
        keep, signature = load(model)
        start = time.perf_counter()
        results = predict.classify(signature, paths, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        failed = sum(1 for r in results if r.error)
        predicted = np.array([class_names.index(r.predicted_class) if r.predicted_class in class_names else -1
                              for r in results])
        correct.append(predicted == labels)
        acc, se = accuracy_with_se(correct[-1])
        versus = ""
        if len(correct) > 1:
            diff, diff_se, only_ref, only_this = paired_difference(correct[0], correct[-1])
            versus = f"{100 * diff:+.2f} ± {100 * diff_se:.2f} ({only_ref} / {only_this})"
        recall = per_class_recall(predicted, labels, len(class_names))
        rows.append([model, len(paths), failed, f"{100 * acc:.2f} ± {100 * se:.2f}", versus,
                     *[f"{100 * r:.1f}" for r in recall], f"{1000 * seconds / len(paths):.1f}"])
        del keep
    print()
    print(tables.format_table(["model", "pool n", "failed", "accuracy ± SE (%)",
                               "paired difference to the first ± SE (points; only first / only this right)",
                               *[f"recall {c}" for c in class_names], "ms/image"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
