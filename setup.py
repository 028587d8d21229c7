"""Packaging for intel-scenes-tfx.

The pins mirror requirements.in (the TFX 1.16.0 tested set); requirements.lock is the fully
resolved environment that scripts/bootstrap.sh installs with uv.
"""
import setuptools

INSTALL_REQUIRES = [
    "tfx[kfp]==1.16.0",
    "tensorflow==2.16.2",
    "tf-keras~=2.16.0",
    "tensorflow-transform==1.16.0",
    "tensorflow-model-analysis~=0.47.0",
    "tensorflow-data-validation~=1.16.0",
    "apache-beam[gcp]==2.59.0",
    "gdown>=5.1,<6",
    "matplotlib>=3.7,<3.10",
    "pillow>=10,<12",
]

setuptools.setup(
    name="intel-scenes-tfx",
    version="0.1.0",
    description="A gated TFX pipeline that turns a folder of labelled images into a MobileNetV3 classifier.",
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "components", "components.*",
                                               "trainer_module", "trainer_module.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=8,<9", "pytest-timeout>=2.3,<3"]},
)
