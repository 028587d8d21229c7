"""Packaging for intel-scenes-tfx.

The pins live in requirements.in only (its [install] and [test] sections); requirements.lock is
the fully resolved environment that scripts/bootstrap.sh installs with uv.
"""
import os
import re
from typing import Dict, List

import setuptools

REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.in")


def read_requirements(path: str = REQUIREMENTS_FILE) -> Dict[str, List[str]]:
    """{section: [requirement]} from a requirements file split by `# [section]` lines."""
    sections: Dict[str, List[str]] = {}
    current = None
    with open(path) as f:
        for line in f:
            header = re.fullmatch(r"#\s*\[(\w+)\]\s*", line.strip())
            if header:
                current = sections.setdefault(header.group(1), [])
                continue
            requirement = line.split("#", 1)[0].strip()
            if requirement:
                if current is None:
                    raise ValueError(f"{path}: {requirement!r} comes before any # [section] line")
                current.append(requirement)
    return sections


REQUIREMENTS = read_requirements()
INSTALL_REQUIRES = REQUIREMENTS["install"]

if __name__ == "__main__":
    setuptools.setup(
        name="intel-scenes-tfx",
        version="0.1.0",
        description="A gated TFX pipeline that turns a folder of labelled images into a MobileNetV3 classifier.",
        python_requires=">=3.10,<3.11",
        packages=setuptools.find_packages(include=[
            "pipeline", "pipeline.*", "components", "components.*", "trainer_module", "data_sources", "run_report",
            "serving_client", "monitoring", "releases", "run_control", "common", "third_party", "third_party.*"]),
        package_data={"pipeline.schema": ["schema.pbtxt"]},  # the curated schema ships with the code
        install_requires=INSTALL_REQUIRES,
        extras_require={"test": REQUIREMENTS["test"]},
    )
