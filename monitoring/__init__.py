"""Level 5: after the push, what the served model is asked about, against what it was trained on.

    __main__.py        `python -m monitoring`: a window of prediction logs compared with the served
                       model's training data; one line per breach, an HTML page, exit 5 on a breach
    reference.py       the training side, found through ML Metadata (or a labelled folder)
    compare.py         the comparisons: TFDV's comparators as the data gate configures them, the
                       shares of failed and low-confidence requests, the confidence drop
    page.py            the monitor's HTML page and its plots
    window.py          the window of logs a command reads (--hours, --since, --until)
    labelling_queue.py `python -m monitoring.labelling_queue`: low-confidence and sampled requests
                       exported as unlabeled/ + queue.csv, the next data drop once sorted

Reads the logs through common/prediction_log.py (serving_client/ writes them; the layout keeps
one level-5 package from importing another). docs/monitoring.md.
"""
