"""Level 1, above the Trainer user module: the names, formats and helpers that every level above it
shares and the Trainer does not need (what the Trainer needs lives in trainer_module/, which TFX
hashes for its cache, so nothing here re-runs Transform or the Trainer when it changes).

    pipeline_names.py  the pipeline's node ids, output keys, artifact properties and files
    dataset.py         the data layout: split names, split folder names, the default label space
    output_dir.py      where a local run writes: pipeline root, ML Metadata, serving dir, caches, logs
    ingest_report.py   the ingest report (what ImageExampleGen read, ingested and skipped, and why)
    file_walk.py       the one walk of a user's folder: links, loops, FIFOs, devices, odd file names
    image_content.py   what an image shows: content statistics, content and perceptual hashes
    store.py           the ML Metadata connection, and what a run recorded in it
    tflite_classifier.py  running an exported TFLite model as an app would
    tfma_results.py    what TFMA wrote: metrics, plots, the validation and each threshold's verdict
                       (the run report and the model card read the same numbers)
    model_card.py      the model card of a pushed version, from the run's artifacts (JSON)
    model_card_pages.py  the card as Markdown and as a self-contained HTML page
    durable.py         writing a file whole or not at all (temporary file, fsync, rename)
    releases.py        release control of a serving dir: labels stable/canary, rollback history,
                       TF Serving's model config file written from them
    prediction_log.py  the prediction logs: one JSON record per request, rotated at a size cap;
                       read back with Vertex AI's request-response logs and TF Serving's PredictionLogs

Imports only trainer_module/ and third_party/ of this project (tests/test_layout.py checks it).
"""
