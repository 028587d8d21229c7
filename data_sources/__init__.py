"""Getting the data: local folders, archives, downloads and Google Drive (sources.py, archives.py),
and the generated demo dataset (demo_data.py). Nothing here writes inside an input folder."""
