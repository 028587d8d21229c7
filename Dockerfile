# The pipeline image for Kubeflow Pipelines v2 / Vertex AI (kubeflow_v2_runner.py --image).
# One image serves every pipeline step, the Vertex AI training job (GPU: the TFX image is built on
# a CUDA-enabled Deep Learning Containers base) and, as --sdk_container_image, the Dataflow
# workers (the TFX image's ENTRYPOINT is Beam's worker boot; pipeline steps and the training job
# set their own command).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/tfx/intel-scenes-tfx:latest .
#
# The tag below must equal the tfx pin in requirements.in (tests/test_kubeflow_v2_runner.py checks it).
FROM gcr.io/tfx-oss-public/tfx:1.16.0

# TFT and TFMA need Keras 2 (tf_keras): TensorFlow reads this when it is first imported.
ENV TF_USE_LEGACY_KERAS=1

WORKDIR /pipeline
COPY requirements.in requirements.lock setup.py ./
COPY pipeline/ pipeline/
COPY components/ components/
COPY trainer_module/ trainer_module/
COPY data_sources/ data_sources/
COPY run_report/ run_report/
COPY serving_client/ serving_client/
COPY releases/ releases/
COPY monitoring/ monitoring/
COPY run_control/ run_control/
COPY common/ common/
COPY third_party/ third_party/

# requirements.in's pins (through setup.py), every transitive version held to the tested set by the lock; what the TFX
# image already has at those versions stays. Not editable: steps import the installed copy
# whatever their working directory. The import (from /, not the sources) smoke-tests it.
RUN python -m pip install --no-cache-dir --constraint requirements.lock . \
    && cd / && python -c "import components.image_example_gen.component, trainer_module.preprocessing, trainer_module.trainer"
