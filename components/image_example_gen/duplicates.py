"""Duplicates and leakage among the ingested images, found in ImageExampleGen's Beam pipeline.

Each ingested image arrives as an ImageHash (split, relative path, content hash, perceptual
hash; common/image_content computes both from the pixels the reader already decoded):

- exact duplicates: images with the same content hash (the same pixels, whatever the file name
  or container) grouped by key. Within one split they are counted (the extra copies per split);
  across splits every (train, eval) pair is leakage: the eval image was seen in training.
- near duplicates across splits: a train and an eval image whose 64-bit perceptual hashes differ
  in at most `max_distance` bits (a resized, re-encoded or slightly retouched copy), confirmed by
  their luma thumbnails correlating at least MIN_THUMBNAIL_SIMILARITY, and whose content hashes
  differ (else it is an exact pair already). The confirmation is needed: on intel-dev (3,600
  images) the dHash alone, within 4 bits, paired 32 train/eval images, every one two different
  photos of a horizon under a bright sky (thumbnail correlation 0.66 to 0.84); a 60 % resized,
  quality-70 copy keeps a correlation above 0.996 and its dHash within 4 bits in 245 of 250 cases.

Why banded buckets, and why by hand: comparing every train hash with every eval hash is
quadratic (16,000 x 3,000 Intel images: 48 million pairs). The pigeonhole principle makes it
exact and linear instead: cut the 64 bits into `max_distance + 1` bands; two hashes within
`max_distance` bits agree exactly on at least one band. Each image is keyed by (band, band
value), only images sharing a bucket are compared, and a pair is emitted from the first band
they share only, so it is reported once. This is locality-sensitive hashing with bands chosen so
no pair within the distance is missed (random-projection LSH would miss some). The buckets are
small unless many images share one band value (flat, featureless pictures); such a bucket is
compared pair by pair. Neither TFDV (it sees features one at a time) nor Beam offers a
similarity join, hence this module.

The report keeps the full counts and a bounded, sorted sample of paths (BoundedSample), so the
report's size does not grow with the data.
"""
import dataclasses
import heapq
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import apache_beam as beam
import numpy as np

from common import dataset, image_content, ingest_report

BITS = image_content.PERCEPTUAL_HASH_BITS
MIN_THUMBNAIL_SIMILARITY = 0.95
# The kinds of finding the Beam step emits, each summarised with a full count and a bounded sample.
WITHIN_SPLIT = "within_split"  # item: (split, sorted paths of one group); weight: extra copies
CROSS_EXACT = "cross_split_exact"  # item: (train path, eval path, 0)
CROSS_NEAR = "cross_split_near"  # item: (train path, eval path, hamming distance)
KINDS = (WITHIN_SPLIT, CROSS_EXACT, CROSS_NEAR)


@dataclasses.dataclass(frozen=True)
class ImageHash:
    """One ingested image's hashes (and its luma thumbnail, image_content.luma_thumbnail)."""
    split: str
    path: str
    content_hash: str
    perceptual_hash: int
    thumbnail: bytes = b""  # float16 bytes of the luma thumbnail

    @classmethod
    def of(cls, split: str, path: str, pixels) -> "ImageHash":
        """The hashes of one decoded image (H x W x 3 uint8)."""
        return cls(split, path, image_content.content_hash(pixels), image_content.perceptual_hash(pixels),
                   image_content.luma_thumbnail(pixels).tobytes())

    def similarity(self, other: "ImageHash") -> float:
        return image_content.thumbnail_similarity(np.frombuffer(self.thumbnail, np.float16),
                                                  np.frombuffer(other.thumbnail, np.float16))


def bands(max_distance: int, bits: int = BITS) -> List[Tuple[int, int]]:
    """(shift, width) of `max_distance + 1` bands covering `bits` bits, as equal as they come."""
    n = max_distance + 1
    if not 1 <= n <= bits:
        raise ValueError(f"max_distance must be in [0, {bits - 1}], got {max_distance}")
    widths = [bits // n + (1 if i < bits % n else 0) for i in range(n)]
    shifts = [sum(widths[:i]) for i in range(n)]
    return list(zip(shifts, widths))


def band_values(value: int, layout: Sequence[Tuple[int, int]]) -> List[int]:
    return [(value >> shift) & ((1 << width) - 1) for shift, width in layout]


def band_keys(h: ImageHash, layout: Sequence[Tuple[int, int]]) -> Iterator[Tuple[Tuple[int, int], ImageHash]]:
    """((band index, band value), image) for every band of its perceptual hash."""
    for i, v in enumerate(band_values(h.perceptual_hash, layout)):
        yield (i, v), h


def near_pairs_in_bucket(key: Tuple[int, int], members: Iterable[ImageHash], max_distance: int = 0,
                         layout: Sequence[Tuple[int, int]] = ()) -> Iterator[Tuple[str, Tuple[str, str, int]]]:
    """(CROSS_NEAR, (train path, eval path, distance)) of the bucket's train/eval pairs within
    `max_distance` bits, emitted only from the first band the two hashes share (once per pair)."""
    band = key[0]
    members = list(members)
    train = [m for m in members if m.split == dataset.TRAIN]
    evals = [m for m in members if m.split == dataset.EVAL]
    for t in train:
        t_bands = band_values(t.perceptual_hash, layout)
        for e in evals:
            if t.content_hash == e.content_hash:
                continue  # an exact pair, counted as such
            distance = image_content.hamming(t.perceptual_hash, e.perceptual_hash)
            if distance > max_distance or t.similarity(e) < MIN_THUMBNAIL_SIMILARITY:
                continue
            e_bands = band_values(e.perceptual_hash, layout)
            first_shared = next(i for i, (a, b) in enumerate(zip(t_bands, e_bands)) if a == b)
            if first_shared == band:
                yield CROSS_NEAR, (t.path, e.path, distance)


def exact_findings(content_hash: str, members: Iterable[ImageHash]) -> Iterator[Tuple[str, Tuple[int, tuple]]]:
    """(kind, (weight, item)) of one content hash's group: within-split copies, cross-split pairs."""
    members = sorted(members, key=lambda m: (m.split, m.path))
    if len(members) < 2:
        return
    by_split: Dict[str, List[str]] = {}
    for m in members:
        by_split.setdefault(m.split, []).append(m.path)
    for split, paths in sorted(by_split.items()):
        if len(paths) > 1:
            yield WITHIN_SPLIT, (len(paths) - 1, (split, tuple(paths)))
    for t in by_split.get(dataset.TRAIN, ()):
        for e in by_split.get(dataset.EVAL, ()):
            yield CROSS_EXACT, (1, (t, e, 0))


class BoundedSample(beam.CombineFn):
    """(total weight, the `limit` smallest items): a full count and a bounded, stable sample."""

    def __init__(self, limit: int):
        self._limit = limit

    def create_accumulator(self):
        return 0, []

    def add_input(self, acc, weighted):
        weight, item = weighted
        return acc[0] + weight, heapq.nsmallest(self._limit, acc[1] + [item])

    def merge_accumulators(self, accumulators):
        total, items = 0, []
        for n, sample in accumulators:
            total += n
            items = heapq.nsmallest(self._limit, items + list(sample))
        return total, items

    def extract_output(self, acc):
        return acc[0], sorted(acc[1])


class FindDuplicates(beam.PTransform):
    """ImageHash -> (kind, (count, sample)) for each of KINDS that occurs."""

    def __init__(self, max_distance: int, max_listed: int):
        super().__init__()
        self._max_distance = max_distance
        self._max_listed = max_listed

    def expand(self, hashes):
        layout = bands(self._max_distance)
        max_distance = self._max_distance
        exact = (hashes
                 | "ByContent" >> beam.Map(lambda h: (h.content_hash, h))
                 | "GroupContent" >> beam.GroupByKey()
                 | "ExactFindings" >> beam.FlatMapTuple(exact_findings))
        near = (hashes
                | "ByBand" >> beam.FlatMap(band_keys, layout=layout)
                | "GroupBand" >> beam.GroupByKey()
                | "NearPairs" >> beam.FlatMapTuple(near_pairs_in_bucket, max_distance=max_distance, layout=layout)
                | "Weigh" >> beam.MapTuple(lambda kind, item: (kind, (1, item))))
        return ((exact, near)
                | "AllFindings" >> beam.Flatten()
                | "Summarise" >> beam.CombinePerKey(BoundedSample(self._max_listed)))


def report(summaries: Iterable[Tuple[str, Tuple[int, list]]], max_distance: int) -> ingest_report.Duplicates:
    """The ingest report's duplicates section from FindDuplicates' output."""
    found = dict(summaries)
    within_n, within = found.get(WITHIN_SPLIT, (0, []))
    exact_n, exact = found.get(CROSS_EXACT, (0, []))
    near_n, near = found.get(CROSS_NEAR, (0, []))
    return ingest_report.Duplicates(
        near_max_hamming=max_distance, within_split=within_n,
        within_split_groups=[{"split": s, "paths": list(p)} for s, p in within],
        cross_split_exact=exact_n, cross_split_near=near_n,
        cross_split_pairs=sorted([{"train": t, "eval": e, "kind": "exact", "hamming": d} for t, e, d in exact]
                                 + [{"train": t, "eval": e, "kind": "near", "hamming": d} for t, e, d in near],
                                 key=lambda p: (p["train"], p["eval"])))
