"""The ingest report: what ImageExampleGen read, ingested and skipped, and why (ingest_report.json).

Ingested + skipped always equals the files seen; the report is also the source of the Examples
artifact's custom properties, and the run report's data section.
"""
import collections
from typing import Any, Dict, List

from components.image_example_gen import image_files

SKIP_OUTSIDE_CLASS_FOLDER = "outside_class_folder"


class ImageIngestError(RuntimeError):
    """The data cannot make a dataset (nothing usable, or a class/split left empty)."""


def build_report(listing: image_files.DatasetListing, stray: List[Dict[str, str]],
                 skipped: List[Dict[str, str]], counts: List[Any]) -> Dict[str, Any]:
    """The machine-readable ingest report from the listing, the skipped files and the
    ((split, class), count) pairs of ingested files."""
    skipped = sorted(stray + skipped, key=lambda s: s["path"])
    ingested = {split: {c: 0 for c in listing.class_names} for split in image_files.SPLITS}
    for (split, class_name), n in counts:
        ingested[split][class_name] = n
    by_reason = collections.Counter(s["reason"] for s in skipped)
    n_ingested = sum(sum(v.values()) for v in ingested.values())
    return {
        "data_root": listing.root,
        "split_mode": listing.split_mode,
        "split_dirs": listing.split_dirs,
        "class_names": listing.class_names,
        "files_seen": len(listing.files) + len(listing.stray_files) + len(listing.unread_files),
        "ingested": n_ingested,
        "skipped": len(skipped),
        "ingested_by_split_and_class": ingested,
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "skipped_files": skipped,
        "ignored_dirs": [{"path": p, "why": w} for p, w in listing.ignored_dirs],
        "ignored_files": listing.other_files,
    }


def stray_entries(listing: image_files.DatasetListing) -> List[Dict[str, str]]:
    """Skip entries of the files the listing did not hand to the readers: files outside any class
    folder, and entries under class folders that are not read (FIFOs, duplicates through links)."""
    stray = [dict(path=image_files.relative_path(p, listing.root), split="", class_name="",
                  reason=SKIP_OUTSIDE_CLASS_FOLDER, detail="") for p in listing.stray_files]
    unread = [dict(path=image_files.relative_path(p, listing.root), split=split, class_name=class_name,
                   reason=reason, detail=detail) for p, split, class_name, reason, detail in listing.unread_files]
    return stray + unread


def check_report(report: Dict[str, Any], report_path: str) -> None:
    """Raises ImageIngestError when the ingested data cannot train and evaluate a classifier."""
    where = f"{report['data_root']} (see {report_path})"
    if report["ingested"] == 0:
        raise ImageIngestError(f"no usable images in {where}; skipped: {report['skipped_by_reason']}")
    per_split = report["ingested_by_split_and_class"]
    empty = [c for c, n in per_split[image_files.TRAIN].items() if n == 0]
    if empty:
        raise ImageIngestError(f"class(es) {empty} have no usable train images in {where}")
    if sum(per_split[image_files.EVAL].values()) == 0:
        raise ImageIngestError(f"the eval split is empty for {where}: add an eval folder "
                               "(val/, test/) or raise eval_fraction")
