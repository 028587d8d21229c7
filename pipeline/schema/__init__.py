"""The curated schema: the data contract of the examples, kept in the repo and imported every run.

    schema.pbtxt  the contract (text proto), with the Intel scenes' class set and the default budget
    curated.py    the schema of one pipeline: the contract with the configured class names and pixel
                  budget; its version (a hash of the text)
    update.py     python -m pipeline.schema.update: propose a schema from a run's statistics, show
                  its diff against schema.pbtxt, write it with --write
"""
