"""Named recipes: what each sets, what wins over it, and what `auto` picks (and says)."""
import json

import pytest

import local_runner
from pipeline import recipes
from trainer_module.train_config import RECIPES, TrainConfig

CLASSES = ("a", "b")


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_is_a_valid_config_of_known_knobs(name):
    cfg = TrainConfig.from_dict({**recipes.RECIPES[name], "class_names": CLASSES, "recipe": name})
    for knob, value in recipes.RECIPES[name].items():
        assert getattr(cfg, knob) == value
    assert set(recipes.RECIPES) | {recipes.AUTO} == set(RECIPES)  # the flag's choices


def test_the_notebook_recipe_is_the_notebooks_and_cpu_needs_no_download():
    assert {k: recipes.NOTEBOOK[k] for k in ("image_size", "resize_size", "weights", "optimizer",
                                              "learning_rate", "cutmix_probability", "batch_size")} == \
        {"image_size": 224, "resize_size": 256, "weights": "imagenet", "optimizer": "sgd", "learning_rate": 0.01,
         "cutmix_probability": 0.5, "batch_size": 64}
    assert recipes.CPU["weights"] == "none" and recipes.GPU["weights"] == "imagenet"
    assert recipes.DEMO["epochs"] < recipes.CPU["epochs"]
    assert {k: v for k, v in recipes.DEMO.items() if k != "epochs"} == \
        {k: v for k, v in recipes.CPU.items() if k != "epochs"}


@pytest.mark.parametrize("requested,demo,gpu,expected", [
    ("auto", True, True, "demo"), ("auto", False, False, "cpu"), ("auto", False, True, "gpu"),
    ("notebook", True, False, "notebook"), ("cpu", False, True, "cpu")])
def test_auto_picks_by_data_and_machine_and_an_explicit_recipe_is_kept(requested, demo, gpu, expected):
    asked = []
    name, why = recipes.resolve(requested, demo_data=demo, gpu_visible=lambda: asked.append(1) or gpu)
    assert name == expected
    assert why.startswith("auto") == (requested == "auto")
    assert bool(asked) == (requested == "auto" and not demo)  # the GPU is looked for only when it decides


def test_local_default_on_real_data_without_a_gpu_is_the_cpu_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "gpu_visible", lambda: False)
    _, train, options = local_runner.parse_command_line(["--data-dir", str(tmp_path)])
    assert train == {**recipes.CPU, "recipe": "cpu"}
    assert options.recipe_line.startswith("recipe cpu (auto: no GPU visible): image_size=128")
    monkeypatch.setattr(recipes, "gpu_visible", lambda: True)
    assert local_runner.parse_args(["--data-dir", str(tmp_path)])[1]["recipe"] == "gpu"


def test_flag_beats_environment_beats_file_beats_recipe(tmp_path, monkeypatch):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"epochs": 7, "label_smoothing": 0.3, "learning_rate": 0.2, "recipe": "cpu"}))
    monkeypatch.setenv("INTEL_SCENES_CONFIG", str(settings))
    monkeypatch.setenv("INTEL_SCENES_LEARNING_RATE", "0.05")
    _, train, options = local_runner.parse_command_line(["--epochs", "3"])
    assert train["recipe"] == "cpu"  # from the file, although the demo data would make auto pick demo
    assert (train["epochs"], train["learning_rate"], train["label_smoothing"]) == (3, 0.05, 0.3)
    assert train["image_size"] == recipes.CPU["image_size"]  # nobody set it: the recipe's
    assert "overridden: epochs, label_smoothing, learning_rate" in options.recipe_line


def test_the_recipe_line_is_printed_when_a_run_starts(tmp_path, capfd):
    """The run prints the recipe before any work; a missing data dir then stops it (exit 1)."""
    code = local_runner.main(["--output-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "missing"),
                              "--recipe", "notebook", "--epochs", "2"])
    out = capfd.readouterr()  # the run's console writes to the file descriptors
    assert code == 1
    assert "recipe notebook (--recipe); overridden: epochs: image_size=224" in out.out + out.err
