"""Level 2: getting the data. Nothing here writes inside an input folder.

    sources.py    a local folder, an archive, an http(s) URL or Google Drive, resolved to a local folder
    archives.py   safe extraction of .zip/.tar archives, and finding the dataset root inside one
    limits.py     the bounds every download and extraction is held to
    errors.py     the errors of data acquisition
    demo_data.py  the generated demo dataset (six synthetic scene classes)
"""
