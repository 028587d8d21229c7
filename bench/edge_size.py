"""Size of the TFLite edge models against the float32 weights, with and without flip averaging.

Converts one MobileNetV3 network (untrained: the tensors and their count are a trained model's)
with trainer_module.tflite_export, as the Trainer does, plain and flip-averaged (model.inference_model),
and prints the file sizes and the int8 file's ratio to the float32 weights (the issue's target: <= 0.3x).

    .venv/bin/python -m bench.edge_size                       # MobileNetV3 Small, 128 px, 6 classes
    .venv/bin/python -m bench.edge_size --image-size 224 --model-variant large
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from bench import machine, tables  # noqa: E402


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.edge_size", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--model-variant", default="small", choices=("small", "large"))
    p.add_argument("--classes", type=int, default=6)
    args = p.parse_args(argv)
    machine.print_header("bench.edge_size", "TFLite file sizes vs the float32 weights", argv)
    import numpy as np
    import tensorflow as tf

    from trainer_module import model as model_lib, tflite_export
    from trainer_module.train_config import TrainConfig

    cfg = TrainConfig(class_names=tuple(f"c{i}" for i in range(args.classes)), image_size=args.image_size,
                      resize_size=args.image_size, model_variant=args.model_variant, test_time_flip=True,
                      tflite_calibration_images=8)
    model = model_lib.build_model(cfg)
    weights = 4 * model.count_params()
    images = np.random.default_rng(0).integers(0, 256, [16, cfg.image_size, cfg.image_size, 3]).astype("float32")
    representative = tf.data.Dataset.from_tensor_slices(images).batch(4)
    rows = []
    for name, network in (("plain", model), ("flip-averaged", model_lib.inference_model(model, cfg))):
        paths = tflite_export.export_edge_models(network, cfg, representative, tempfile.mkdtemp())
        sizes = {flavour: os.path.getsize(path) for flavour, path in paths.items()}
        rows.append([name, weights, sizes["float16"], sizes["int8"], f"{sizes['int8'] / weights:.3f}"])
    print(tables.format_table(["network", "float32 weights B", "float16 B", "int8 B", "int8 x weights"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
