r"""The full Intel training data with a fixed, stratified pool held back from training.

Like ../shared/data/make-intel-full.sh, but DEST/train leaves out a held-back pool of intel-rest
images, which go to DEST/holdout, so that a model trained on DEST (train + val) can be scored on
images it never saw (bench/score_pool.py):

  DEST/train/<class>/    intel-dev/train + intel-rest/train minus the pool (13,439 - 6 x per_class)
  DEST/val/<class>/      intel-dev/val (600: the pipeline's eval split, as make-intel-full.sh)
  DEST/holdout/<class>/  per_class intel-rest/train images of each class (default 400: 2,400)

The pool is the first per_class files of each class in the order of the SHA-256 of their file
names: fixed, stratified, independent of listing order and of everything else. Files are symbolic
links to the read-only data (ImageExampleGen reads links to files outside the data folder).

    .venv/bin/python -m bench.holdout_split /tmp/intel-holdout                    # 11,039 + 600 + 2,400
    .venv/bin/python -m bench.holdout_split /tmp/intel-holdout --per-class 600    # a 3,600-image pool
"""
import argparse
import hashlib
import os
import sys
from typing import Dict, List

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def held_back(files: List[str], per_class: int) -> List[str]:
    """The per_class names of one class's files that come first by SHA-256 of the name."""
    return sorted(files, key=lambda name: hashlib.sha256(name.encode()).hexdigest())[:per_class]


def make_split(data: str, dest: str, per_class: int) -> Dict[str, int]:
    """Writes DEST's three folders of links; returns the image count of each."""
    if os.path.exists(dest):
        raise FileExistsError(f"{dest} already exists")
    dev, rest = os.path.join(data, "intel-dev"), os.path.join(data, "intel-rest", "train")
    counts = {"train": 0, "val": 0, "holdout": 0}

    def link(src_dir: str, names: List[str], split: str, cls: str) -> None:
        os.makedirs(os.path.join(dest, split, cls), exist_ok=True)
        for name in names:
            os.symlink(os.path.abspath(os.path.join(src_dir, name)), os.path.join(dest, split, cls, name))
        counts[split] += len(names)

    for cls in sorted(os.listdir(rest)):
        rest_files = sorted(os.listdir(os.path.join(rest, cls)))
        pool = held_back(rest_files, per_class)
        if len(pool) < per_class:
            raise ValueError(f"{rest}/{cls} has {len(rest_files)} images, fewer than --per-class {per_class}")
        link(os.path.join(rest, cls), pool, "holdout", cls)
        link(os.path.join(rest, cls), sorted(set(rest_files) - set(pool)), "train", cls)
        link(os.path.join(dev, "train", cls), sorted(os.listdir(os.path.join(dev, "train", cls))), "train", cls)
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
    for split, n in counts.items():
        print(f"{split}: {n} images in {os.path.join(args.dest, split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
