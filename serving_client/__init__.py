"""Clients of the served model, and the Vertex AI serving image.

    predict.py         finds and loads the pushed SavedModel and classifies image files to CSV
                       (`python -m serving_client.predict`)
    rest.py            maps a TF Serving REST `:predict` body onto the serving signature's inputs
    vertex_server.py   entrypoint of vertex.Dockerfile: TF Serving 2.16 behind the routes Vertex
                       AI calls (docs/serving.md)
"""
