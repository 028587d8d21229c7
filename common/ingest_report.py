"""The ingest report (ingest_report.json beside the Examples' splits): what ImageExampleGen read,
ingested and skipped, and why. One schema, IngestReport: ImageExampleGen builds and writes it;
the Examples artifact's properties, the progress line, the run report and lineage read it.

Ingested + skipped always equals the files seen. Every file under a class folder ends up ingested
or skipped with one of SKIP_REASONS; a file outside any class folder is skipped too.
"""
import collections
import dataclasses
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common import dataset
from common import file_walk
from trainer_module import image_format

# Why a file was not ingested: the walk's reasons (file_walk), then what reading it found.
SKIP_EMPTY = "empty_file"
SKIP_NOT_IMAGE = "not_an_image"
SKIP_TRUNCATED = "truncated_image"
SKIP_UNDECODABLE = "undecodable_image"
# The header declares more than max_image_pixels (a decompression bomb?): never decoded.
SKIP_TOO_MANY_PIXELS = image_format.TOO_MANY_PIXELS
SKIP_OUTSIDE_CLASS_FOLDER = "outside_class_folder"
# The walk's reasons, the report's too: a file it did not read is skipped with its reason.
SKIP_UNREADABLE, SKIP_NOT_REGULAR = file_walk.SKIP_UNREADABLE, file_walk.SKIP_NOT_REGULAR
SKIP_DUPLICATE, SKIP_BAD_NAME = file_walk.SKIP_DUPLICATE, file_walk.SKIP_BAD_NAME
SKIP_REASONS = (SKIP_EMPTY, SKIP_NOT_IMAGE, SKIP_TRUNCATED, SKIP_UNDECODABLE, SKIP_TOO_MANY_PIXELS,
                *file_walk.WALK_SKIP_REASONS, SKIP_OUTSIDE_CLASS_FOLDER)


class ImageIngestError(RuntimeError):
    """The data cannot make a dataset (nothing usable, or a class/split left empty)."""


@dataclasses.dataclass
class SkippedFile:
    """One file that was not ingested: its path relative to the data root, split and class ("" when
    outside any class folder), why (one of SKIP_REASONS) and details."""
    path: str
    split: str
    class_name: str
    reason: str
    detail: str = ""


# Paths listed per kind of duplicate in the report (the counts are always complete).
MAX_LISTED_DUPLICATES = 50


@dataclasses.dataclass
class Duplicates:
    """Duplicated images among the ingested ones (components/image_example_gen/duplicates.py).

    within_split: extra copies of the same pixels inside one split (a group of 3 counts 2);
    cross_split_exact / cross_split_near: (train, eval) pairs showing the same pixels / a perceptual
    hash within near_max_hamming bits: eval images the model was trained on (leakage). The lists
    hold at most MAX_LISTED_DUPLICATES entries each, sorted by path; the counts are complete.
    """
    near_max_hamming: int
    within_split: int = 0
    within_split_groups: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # {"split", "paths"}
    cross_split_exact: int = 0
    cross_split_near: int = 0
    # {"train", "eval", "kind" ("exact" or "near"), "hamming"}
    cross_split_pairs: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def cross_split(self) -> int:
        return self.cross_split_exact + self.cross_split_near


@dataclasses.dataclass
class IngestReport:
    """What one ImageExampleGen execution read; its JSON keys are these field names."""
    data_root: str
    split_mode: str  # "folders" or "hash"
    class_names: List[str]
    files_seen: int
    ingested: int
    skipped: int
    ingested_by_split_and_class: Dict[str, Dict[str, int]]
    skipped_by_reason: Dict[str, int] = dataclasses.field(default_factory=dict)
    skipped_files: List[SkippedFile] = dataclasses.field(default_factory=list)
    split_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)  # split -> folder ("" in hash mode)
    ignored_dirs: List[Dict[str, str]] = dataclasses.field(default_factory=list)  # {"path", "why"}: not read
    ignored_files: List[str] = dataclasses.field(default_factory=list)  # beside the split folders: not read
    duplicates: Optional[Duplicates] = None  # None: a report written before duplicates were looked for

    def per_split(self) -> Dict[str, int]:
        """{split: images ingested}."""
        return {split: sum(classes.values()) for split, classes in self.ingested_by_split_and_class.items()}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "IngestReport":
        """The report from its JSON object; unknown keys (a newer writer's) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["skipped_files"] = [SkippedFile(**s) for s in values.get("skipped_files", [])]
        if values.get("duplicates") is not None:
            values["duplicates"] = Duplicates(**values["duplicates"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "IngestReport":
        return cls.from_dict(json.loads(text))


def read(path: str) -> IngestReport:
    """The ingest report at `path` (local or gs://)."""
    import tensorflow as tf  # gs:// paths; the local reader of the report loads nothing else

    with tf.io.gfile.GFile(path) as f:
        return IngestReport.from_json(f.read())


def build(listing, unread: Sequence[SkippedFile], skipped: Sequence[SkippedFile],
          counts: Sequence[Tuple[Tuple[str, str], int]], duplicates: Optional[Duplicates] = None) -> IngestReport:
    """The report of one ingestion.

    listing: ImageExampleGen's DatasetListing (root, split_mode, split_dirs, class_names, files,
    ignored_dirs, other_files); unread: the entries it never handed to the readers; skipped: what
    the readers refused; counts: ((split, class), n) of the ingested files; duplicates: what the
    duplicate search found.
    """
    skipped_files = sorted([*unread, *skipped], key=lambda s: s.path)
    ingested = {split: {c: 0 for c in listing.class_names} for split in dataset.SPLITS}
    for (split, class_name), n in counts:
        ingested[split][class_name] = n
    by_reason = collections.Counter(s.reason for s in skipped_files)
    n_ingested = sum(sum(v.values()) for v in ingested.values())
    return IngestReport(
        data_root=listing.root, split_mode=listing.split_mode, split_dirs=dict(listing.split_dirs),
        class_names=list(listing.class_names), files_seen=len(listing.files) + len(unread),
        ingested=n_ingested, skipped=len(skipped_files), ingested_by_split_and_class=ingested,
        skipped_by_reason=dict(sorted(by_reason.items())), skipped_files=skipped_files,
        ignored_dirs=[{"path": p, "why": w} for p, w in listing.ignored_dirs],
        ignored_files=list(listing.other_files), duplicates=duplicates)


def check(report: IngestReport, report_path: Optional[str] = None) -> None:
    """Raises ImageIngestError when the ingested data cannot train and evaluate a classifier."""
    where = f"{report.data_root}" + (f" (see {report_path})" if report_path else "")
    if report.ingested == 0:
        raise ImageIngestError(f"no usable images in {where}; skipped: {report.skipped_by_reason}")
    per_split = report.ingested_by_split_and_class
    empty = [c for c, n in per_split[dataset.TRAIN].items() if n == 0]
    if empty:
        raise ImageIngestError(f"class(es) {empty} have no usable train images in {where}")
    if sum(per_split[dataset.EVAL].values()) == 0:
        raise ImageIngestError(f"the eval split is empty for {where}: add an eval folder "
                               "(val/, test/) or raise eval_fraction")
