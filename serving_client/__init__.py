"""Clients of the served model.

    predict.py  finds and loads the pushed SavedModel and classifies image files to CSV
                (`python -m serving_client.predict`)
    rest.py     maps a TF Serving REST `:predict` body onto the serving signature's inputs
"""
