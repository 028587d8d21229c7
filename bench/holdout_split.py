r"""The full Intel training data with a fixed, stratified pool held back from training.

Like ../shared/data/make-intel-full.sh, but DEST/train leaves out a held-back pool of intel-rest
images, which go to DEST/holdout, so that a model trained on DEST (train + val) can be scored on
images it never saw (bench/score_pool.py):

  DEST/train/<class>/    intel-dev/train + intel-rest/train minus the pool (13,439 - 6 x per_class)
  DEST/val/<class>/      intel-dev/val (600: the pipeline's eval split, as make-intel-full.sh)
  DEST/holdout/<class>/  per_class intel-rest/train images of each class (default 400: 2,400)

The pool is the first per_class files of each class in the order of the SHA-256 of their file
names: fixed, stratified, independent of listing order and of everything else. An image whose bytes
another file of the data repeats never enters the pool (it would score a copy of a training image),
and a training image that copies a val image is left out (the pipeline's data gate stops on it: the
Intel training folder holds one, intel-rest/train/street/7618.jpg = intel-dev/val/street/17693.jpg).
Files are symbolic links to the read-only data (ImageExampleGen reads links to files outside the data
folder).

    .venv/bin/python -m bench.holdout_split /tmp/intel-holdout                    # 11,039 + 600 + 2,400
    .venv/bin/python -m bench.holdout_split /tmp/intel-holdout --per-class 600    # a 3,600-image pool
"""
import argparse
import collections
import glob
import hashlib
import os
import sys
from typing import Callable, Dict, List

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def held_back(files: List[str], per_class: int, eligible: Callable[[str], bool] = lambda name: True) -> List[str]:
    """The per_class names of one class's eligible files that come first by SHA-256 of the name."""
    ordered = sorted(files, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    return [name for name in ordered if eligible(name)][:per_class]


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_split(data: str, dest: str, per_class: int) -> Dict[str, int]:
    """Writes DEST's three folders of links; returns the image count of each, and of the training
    images left out as copies of a val image."""
    if os.path.exists(dest):
        raise FileExistsError(f"{dest} already exists")
    dev, rest = os.path.join(data, "intel-dev"), os.path.join(data, "intel-rest", "train")
    counts = {"train": 0, "val": 0, "holdout": 0, "left_out": 0}
    digests = {path: _digest(path) for folder in (os.path.join(dev, "train"), os.path.join(dev, "val"), rest)
               for cls in sorted(os.listdir(folder)) for path in glob.glob(os.path.join(folder, cls, "*"))}
    repeated = {d for d, n in collections.Counter(digests.values()).items() if n > 1}
    val_digests = {d for path, d in digests.items() if path.startswith(os.path.join(dev, "val") + os.sep)}

    def link(src_dir: str, names: List[str], split: str, cls: str) -> None:
        os.makedirs(os.path.join(dest, split, cls), exist_ok=True)
        for name in names:
            os.symlink(os.path.abspath(os.path.join(src_dir, name)), os.path.join(dest, split, cls, name))
        counts[split] += len(names)

    def not_a_val_copy(folder: str, names: List[str]) -> List[str]:
        kept = [name for name in names if digests[os.path.join(folder, name)] not in val_digests]
        counts["left_out"] += len(names) - len(kept)
        return kept

    for cls in sorted(os.listdir(rest)):
        rest_files = sorted(os.listdir(os.path.join(rest, cls)))
        pool = held_back(rest_files, per_class, lambda name: digests[os.path.join(rest, cls, name)] not in repeated)
        if len(pool) < per_class:
            raise ValueError(f"{rest}/{cls} has {len(rest_files)} images, fewer than --per-class {per_class} "
                             "whose bytes no other image repeats")
        link(os.path.join(rest, cls), pool, "holdout", cls)
        link(os.path.join(rest, cls), not_a_val_copy(os.path.join(rest, cls), sorted(set(rest_files) - set(pool))),
             "train", cls)
        dev_train = os.path.join(dev, "train", cls)
        link(dev_train, not_a_val_copy(dev_train, sorted(os.listdir(dev_train))), "train", cls)
        link(os.path.join(dev, "val", cls), sorted(os.listdir(os.path.join(dev, "val", cls))), "val", cls)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.holdout_split", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", help="folder to create (must not exist)")
    p.add_argument("--per-class", type=int, default=400, help="held-back images per class (default %(default)s)")
    p.add_argument("--data", default=DEFAULT_DATA, help="folder holding intel-dev and intel-rest (default: "
                                                        "../shared/data beside the repository)")
    args = p.parse_args(argv)
    counts = make_split(os.path.normpath(args.data), args.dest, args.per_class)
    for split in ("train", "val", "holdout"):
        print(f"{split}: {counts[split]} images in {os.path.join(args.dest, split)}")
    print(f"left out: {counts['left_out']} training image(s) that copy a val image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
