"""ImageExampleGen: a Beam TFX component that ingests a labelled image folder as tf.Examples.

  component.py      the component and its spec
  driver.py         lists and fingerprints the input files before TFX's cache lookup
  executor.py       lists, reads, checks and writes the files with Beam
  image_files.py    the folder layout rules and the per-file checks
  records.py        the tf.Example written per image, and the raw feature spec (TensorFlow only)

The ingest report it writes is common/ingest_report.py's.
"""
