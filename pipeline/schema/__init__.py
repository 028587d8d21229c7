"""The curated schema: the data contract of the examples, kept in the repo and imported every run.

    schema.pbtxt  the contract (text proto), with the Intel scenes' class set and the default budget
    curated.py    the schema of one pipeline: the contract with the configured class names and pixel
                  budget (its version is CuratedSchemaGen's, a hash of the text)

`python -m run_control.schema_update` proposes a schema from a run's statistics, shows its diff
against schema.pbtxt and writes it with --write.
"""
