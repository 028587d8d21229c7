"""Level 5: clients of the served model, and the Vertex AI serving image.

    predict.py         finds and loads the pushed SavedModel (or a TFLite model) and classifies
                       image files to CSV (`python -m serving_client.predict`)
    vertex_server.py   entrypoint of vertex.Dockerfile: TF Serving 2.16 behind the routes Vertex
                       AI calls (docs/serving.md)
"""
