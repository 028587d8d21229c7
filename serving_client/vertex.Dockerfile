# The Vertex AI serving image: the official TF Serving of the model's TensorFlow version (Vertex's
# newest prebuilt TensorFlow container is 2.15) behind the routes Vertex calls
# (serving_client/vertex_server.py, docs/serving.md "Vertex AI"). Build from the repository root:
#   docker build -f serving_client/vertex.Dockerfile -t $SERVING_IMAGE .
FROM tensorflow/serving:2.16.1

# Python 3 runs the entrypoint; google-cloud-storage copies the model from AIP_STORAGE_URI
# (the version of requirements.lock).
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && pip3 install --no-cache-dir google-cloud-storage==2.19.0 \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

COPY serving_client/vertex_server.py /opt/vertex_server.py
# The prediction log (PREDICTION_LOG_DIR, docs/monitoring.md): standard-library modules of the project.
COPY common/__init__.py common/prediction_log.py /opt/common/
COPY trainer_module/__init__.py trainer_module/names.py trainer_module/image_format.py /opt/trainer_module/
ENV MODEL_NAME=intel-scenes
# The image's own entrypoint (tf_serving_entrypoint.sh) serves /models/$MODEL_NAME directly;
# Vertex needs the copy from AIP_STORAGE_URI and its routes first.
ENTRYPOINT ["python3", "/opt/vertex_server.py"]
