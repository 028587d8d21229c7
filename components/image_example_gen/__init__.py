"""ImageExampleGen: a Beam TFX component that ingests a labelled image folder as tf.Examples.

  component.py      the component and its spec
  driver.py         fingerprints the input files before TFX's cache lookup
  executor.py       lists, reads, checks and writes the files with Beam
  image_files.py    the folder layout rules and the per-file checks
  ingest_report.py  the counted report of what was ingested and skipped
  records.py        the tf.Example written per image, and the raw feature spec (TensorFlow only)
"""
