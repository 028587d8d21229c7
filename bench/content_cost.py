"""What the image content statistics and hashes cost ingestion, per image, with against without.

Side by side in one run, on the same real image files: ImageExampleGen's reader
(executor._ReadAndEncode: read, check and decode, build the tf.Example) with the content
statistics and the content/perceptual hashes and thumbnail (`with`, as the pipeline runs) and
without them (`without`: the reader before issue 21). The two alternate file by file over
--repeats passes, so drift of the machine's load falls on both alike; the table gives wall and CPU
milliseconds per image, and the ratio with / without. Then the duplicate search
(duplicates.FindDuplicates) on the hashes of every file, in Beam's DirectRunner as the pipeline
runs it, timed whole (its per-image share is what it adds on top).

    .venv/bin/python -m bench.content_cost                        # intel-dev (train + val)
    .venv/bin/python -m bench.content_cost --data-dir DIR --n 500 # the first 500 files of DIR

The data folder is only read.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from bench import machine, tables
from pipeline.configs import REPO_ROOT

DEFAULT_DATA_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "intel-dev"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="labelled images, <split>/<class>/<image> or <class>/<image> (default: %(default)s)")
    p.add_argument("--n", type=int, default=0, help="files to read (0: all)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the files, each reader alternating")
    return p.parse_args(argv)


def _time_reader(reader, entry):
    wall, cpu = time.perf_counter(), machine.cpu_seconds()
    outputs = list(reader.process(entry))
    return time.perf_counter() - wall, machine.cpu_seconds() - cpu, outputs


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    machine.print_header(__spec__.name, "ingestion per image with and without the content statistics", argv)
    import apache_beam as beam

    from components.image_example_gen import duplicates, executor, image_files
    from pipeline.configs import LOCAL_BEAM_ARGS
    from trainer_module import image_format

    try:
        listing = image_files.list_image_files(args.data_dir)
    except image_files.DatasetLayoutError as e:
        print(f"{e} (pass --data-dir)", file=sys.stderr)
        return 2
    files = listing.files[:args.n] if args.n else listing.files
    entries = [f.__dict__ for f in files]
    readers = {"with": executor._ReadAndEncode(listing.class_names, image_format.DEFAULT_MAX_IMAGE_PIXELS, content=True),
               "without": executor._ReadAndEncode(listing.class_names, image_format.DEFAULT_MAX_IMAGE_PIXELS,
                                                  content=False)}
    print(f"data: {args.data_dir}: {len(entries)} files ({listing.split_mode} split), {args.repeats} passes")
    for name, reader in readers.items():  # warm-up: TensorFlow's first decode and resize traces
        _time_reader(reader, entries[0])
    times = {name: [] for name in readers}
    hashes = []
    for repeat in range(args.repeats):
        for i, entry in enumerate(entries):
            order = list(readers) if (i + repeat) % 2 == 0 else list(reversed(list(readers)))
            for name in order:
                wall, cpu, outputs = _time_reader(readers[name], entry)
                times[name].append((wall, cpu))
                if name == "with" and repeat == 0:
                    hashes += [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)
                               and o.tag == executor._ReadAndEncode.HASHES]
    rows = []
    per_image = {}
    for name, samples in times.items():
        walls = [w for w, _ in samples]
        per_image[name] = (statistics.mean(walls) * 1e3, statistics.median(walls) * 1e3,
                           statistics.mean(c for _, c in samples) * 1e3)
        rows.append((name, len(samples), *per_image[name]))
    ratio = [per_image["with"][k] / per_image["without"][k] for k in range(3)]
    rows.append(("ratio with / without", "", *ratio))
    print(tables.format_table(["reader", "images timed", "wall ms/image (mean)", "wall ms/image (median)",
                        "CPU ms/image (mean)"], rows))

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # Beam pickles its functions: the results come back in a file
        out = os.path.join(tmp, "found")
        with beam.Pipeline(argv=list(LOCAL_BEAM_ARGS)) as p:
            _ = (p | beam.Create(hashes) | duplicates.FindDuplicates(executor.DEFAULT_NEAR_DUPLICATE_MAX_HAMMING, 50)
                 | beam.Map(json.dumps) | beam.io.WriteToText(out, num_shards=1, shard_name_template=""))
        with open(out) as f:
            found = [json.loads(line) for line in f]
    search = time.perf_counter() - start
    report = duplicates.report(found, executor.DEFAULT_NEAR_DUPLICATE_MAX_HAMMING)
    print(f"duplicate search (Beam DirectRunner, {len(hashes)} images): {search:.2f} s whole, "
          f"{search / max(len(hashes), 1) * 1e3:.2f} ms/image; found {report.within_split} extra copies within "
          f"splits, {report.cross_split_exact} exact and {report.cross_split_near} near train/eval pairs")
    print(f"content statistics and hashes: {per_image['with'][0] - per_image['without'][0]:.2f} ms/image more "
          f"(wall, mean), ratio {ratio[0]:.2f}x wall, {ratio[2]:.2f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
