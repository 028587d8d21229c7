"""Named training recipes: presets of TrainConfig knobs, one flag (`--recipe`) to pick one.

A recipe fills only the knobs nobody set: a flag, an INTEL_SCENES_<KNOB> variable or the settings
file wins over it, and a knob a recipe leaves out keeps TrainConfig's declared default. Each
recipe's measured result is in bench/RESULTS.md and the README's configuration section.

  notebook  the notebook's recipe as it was: 224 crops of 256, ImageNet weights, batch 64, SGD 0.01,
            CutMix 0.5, step decay every 3 epochs (its best schedule). Needs the ImageNet weights
            (a download, or --weights FILE.h5).
  cpu       the best from-scratch recipe for a CPU-only machine (no weights to download): 128 crops
            of 144 px (the Intel images are 150 px), SGD with warmup + cosine decay, CutMix, label
            smoothing, weight decay, a moving average of the weights, flip-averaged predictions;
            each change justified by bench/recipe_study.py's ablation.
  gpu       ImageNet-pretrained MobileNetV3 Large at 224 px on a GPU, head first then fine-tuning;
            what the Kubeflow / Vertex runner uses by default.
  demo      the cpu recipe with few epochs: the generated demo dataset only shows the pipeline works.
  auto      demo on the demo dataset, else gpu when a GPU is visible, else cpu (the runner logs
            which and why).
"""
import argparse
from typing import Any, Callable, Dict, List, Tuple

AUTO = "auto"

NOTEBOOK = dict(image_size=224, resize_size=256, weights="imagenet", batch_size=64, optimizer="sgd",
                learning_rate=0.01, cutmix_probability=0.5, schedule="step", step_every_epochs=3,
                step_factor=0.1, epochs=9)

CPU = dict(image_size=128, resize_size=144, weights="none", batch_size=64, optimizer="sgd", learning_rate=0.03,
           schedule="warmup_cosine", warmup_epochs=1.0, epochs=40, cutmix_probability=0.5,
           label_smoothing=0.1, weight_decay=5e-4, ema_momentum=0.99, test_time_flip=True)

GPU = dict(model_variant="large", image_size=224, resize_size=256, weights="imagenet", batch_size=64,
           optimizer="sgd", learning_rate=0.01, schedule="warmup_cosine", warmup_epochs=1.0, epochs=12,
           frozen_backbone_epochs=1, fine_tune_lr_factor=0.5, cutmix_probability=0.5, label_smoothing=0.1,
           test_time_flip=True)

DEMO = dict(CPU, epochs=5)

RECIPES: Dict[str, Dict[str, Any]] = {"notebook": NOTEBOOK, "cpu": CPU, "gpu": GPU, "demo": DEMO}


def resolve(requested: str, demo_data: bool, gpu_visible: Callable[[], bool]) -> Tuple[str, str]:
    """(recipe name, why): `requested` itself, or what auto picks (gpu_visible is only called then)."""
    if requested != AUTO:
        return requested, "--recipe" if requested else "default"
    if demo_data:
        return "demo", "auto: the generated demo dataset (--recipe cpu for the full CPU recipe)"
    if gpu_visible():
        return "gpu", "auto: a GPU is visible"
    return "cpu", "auto: no GPU visible"


def fill_unset(args: argparse.Namespace, recipe: str) -> List[str]:
    """Sets each knob of the recipe that args leaves unset (None); returns the knobs it set."""
    filled = []
    for knob, value in RECIPES[recipe].items():
        if getattr(args, knob, None) is None:
            setattr(args, knob, value)
            filled.append(knob)
    return filled


def describe(recipe: str, why: str, filled: List[str]) -> str:
    """One log line: the recipe, why it was chosen, and which of its knobs were overridden."""
    overridden = sorted(set(RECIPES[recipe]) - set(filled))
    return (f"recipe {recipe} ({why})" + (f"; overridden: {', '.join(overridden)}" if overridden else "")
            + f": {', '.join(f'{k}={v}' for k, v in RECIPES[recipe].items() if k in filled)}")


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (what the Trainer would train on)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
