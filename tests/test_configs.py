"""Self-documenting configuration: every knob has a help text, the runners' flags come from the
config dataclasses, and bad values are refused naming the knob the user set."""
import dataclasses
import math

import pytest

import local_runner
from pipeline import configs, flags, recipes
from trainer_module import knobs
from trainer_module.train_config import ConfigError, TrainConfig

CLASSES = ("a", "b")


@pytest.mark.parametrize("cls", [configs.PipelineConfig, TrainConfig])
def test_every_knob_has_a_help_text(cls):
    for field in dataclasses.fields(cls):
        assert len(knobs.help_of(field)) > 15, f"{cls.__name__}.{field.name} has no meaningful help"


def test_local_runner_help_shows_every_knob_with_its_meaning_and_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        local_runner.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for cls, skipped in ((configs.PipelineConfig, ()), (TrainConfig, ("class_names",))):
        for field in dataclasses.fields(cls):
            if field.name in skipped:
                continue
            assert flags.flag_name(field.name) in text
            assert " ".join(knobs.help_of(field).split()) in text, field.name
    assert "{sgd,adam,adamw}" in text and "[default: sgd]" in text
    assert "[default: 0.5]" in text  # cutmix_probability


def test_flags_parse_types_choices_and_lists():
    cfg, train = local_runner.parse_args(["--epochs", "3", "--no-random-flip", "--class-names", "x,y,z",
                                          "--optimizer", "adamw", "--eval-fraction", "0.3"])
    # Flags win over the recipe (auto: demo, as no --data-dir is given), which fills the rest.
    assert train == {**recipes.DEMO, "recipe": "demo", "epochs": 3, "random_flip": False, "optimizer": "adamw"}
    assert cfg.class_names == ("x", "y", "z") and cfg.eval_fraction == 0.3
    with pytest.raises(SystemExit):
        local_runner.parse_args(["--optimizer", "rmsprop"])  # not among the choices


def test_epochs_zero_names_epochs():
    with pytest.raises(ConfigError, match=r"^epochs=0: must be >= 1"):
        TrainConfig(class_names=CLASSES, epochs=0)


@pytest.mark.parametrize("knob", ["learning_rate", "weight_decay", "decoded_cache_gb", "warmup_epochs",
                                  "label_smoothing"])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_training_values_are_refused(knob, value):
    with pytest.raises(ConfigError, match=rf"^{knob}=(inf|nan): must be a finite number"):
        TrainConfig(class_names=CLASSES, **{knob: value})


@pytest.mark.parametrize("overrides,message", [
    ({"eval_fraction": 1.0}, r"eval_fraction=1.0: must be in \(0, 1\)"),
    ({"accuracy_lower_bound": math.inf}, "accuracy_lower_bound=inf: must be a finite number"),
    ({"accuracy_max_drop": -0.1}, r"accuracy_max_drop=-0.1: must be in \[0, 1\]"),
    ({"demo_train_per_class": 0}, "demo_train_per_class=0: must be >= 1"),
    ({"pipeline_name": ""}, "pipeline_name='': must not be empty"),
    ({"label_vetting_max_drop": 1.5}, r"label_vetting_max_drop=1.5: must be in \[0, 1\]"),
    ({"label_vetting_train_sample": -1}, "label_vetting_train_sample=-1: must be >= 0"),
])
def test_pipeline_config_refuses_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        configs.PipelineConfig(**overrides)


def test_choices_are_checked_for_configs_not_built_from_flags():
    with pytest.raises(ConfigError, match=r"^schedule='cosine': must be one of"):
        TrainConfig(class_names=CLASSES, schedule="cosine")


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "error: epochs=0: must be >= 1 (exit 2)"),
    (["--learning-rate", "inf"], "error: learning_rate=inf: must be a finite number (exit 2)"),
    (["--eval-fraction", "1.5"], r"error: eval_fraction=1.5: must be in (0, 1) (exit 2)"),
])
def test_local_runner_refuses_a_bad_knob_in_one_line_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert local_runner.main(["--output-dir", str(out), *argv]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not out.exists()  # no demo data generated, nothing written
