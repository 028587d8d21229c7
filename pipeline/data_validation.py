"""The data validation's TFX components as create_pipeline wires them: statistics options and the
two DistributionValidators (drift against the served model's data, skew between eval and train),
each comparing the class, image size and image content distributions.

Why TFX's DistributionValidator: ExampleValidator never passes TFDV previous statistics, so a
drift_comparator written in the schema would never be applied. DistributionValidator is TFX's
component that does: it runs tfdv.validate_statistics with the baseline as previous statistics
and these comparators, one split pair at a time, writes the measured distances (drift_skew_info)
whether or not they breach, and flags a comparison it could not make. (components/
distribution_validator.py makes its baseline optional and parses its config on Kubeflow.)
"""
import tensorflow_data_validation as tfdv
from tfx.proto import distribution_validator_pb2

from common import image_content, pipeline_names
from components.data_gate.findings import DRIFT_PAIR, SKEW_PAIR
from components.distribution_validator import DistributionValidator
from pipeline.configs import PipelineConfig
from trainer_module import names

SIZE_FEATURES = (names.HEIGHT_KEY, names.WIDTH_KEY)
# The content statistics the comparators watch: all but the aspect ratio, which the height and
# width comparators already see exactly (as counted sizes); as a number it has the outlier problem
# distribution_config describes (intel-dev's own train vs eval: 0.68, two halves of train: 0.45).
CONTENT_FEATURES = tuple(k for k in image_content.STATISTICS if k != image_content.ASPECT_RATIO)


def stats_options() -> tfdv.StatsOptions:
    """TFDV options: semantic domain statistics, so the image bytes get image-domain statistics
    (format histogram: what the schema's image_domain checks)."""
    return tfdv.StatsOptions(enable_semantic_domain_stats=True)


def distribution_config(class_max_linf: float, size_max_jsd: float, content_max_jsd: float
                        ) -> distribution_validator_pb2.DistributionValidatorConfig:
    """The class distribution by L-infinity distance (largest change of one class's share), the
    image height and width distributions and the content statistics (CONTENT_FEATURES) by
    Jensen-Shannon divergence.

    The sizes are categorical in the schema (int_domain is_categorical), so TFDV counts each size
    and the divergence is exact. Over numeric features TFDV takes equal-width histograms and
    spreads each bucket's count evenly across it: between intel-dev's own train and eval splits,
    whose heights are 150 but for a few smaller ones, that read 0.54 for the height (0.002 as
    counted), and every new drop with other outliers would have been stopped.

    The content statistics are continuous and spread over their range, where the histograms work:
    intel-dev's eval vs train reads 0.008 to 0.018, two halves of its train split 0.007 to 0.013;
    its train split turned grayscale and darkened to 40 % reads 0.45 (sharpness) to 1.0
    (saturation, colourfulness) against the original. Small samples read more: two demo drops of
    144 train images differ by up to 0.08, 36 eval images from their 144 train images by up to
    0.10, hence the default threshold 0.2 (--content-drift-max-jsd).
    """
    config = distribution_validator_pb2.DistributionValidatorConfig()
    comparators = config.default_slice_config.feature
    classes = comparators.add()
    classes.path.step.append(names.CLASS_NAME_KEY)
    classes.distribution_comparator.infinity_norm.threshold = class_max_linf
    for name in SIZE_FEATURES:
        size = comparators.add()
        size.path.step.append(name)
        size.distribution_comparator.jensen_shannon_divergence.threshold = size_max_jsd
    for name in CONTENT_FEATURES:
        content = comparators.add()
        content.path.step.append(name)
        content.distribution_comparator.jensen_shannon_divergence.threshold = content_max_jsd
    return config


def comparator_config(cfg: PipelineConfig) -> distribution_validator_pb2.DistributionValidatorConfig:
    return distribution_config(cfg.class_drift_max_linf, cfg.size_drift_max_jsd, cfg.content_drift_max_jsd)


def drift_warn_only(cfg: PipelineConfig) -> list:
    """The features whose drift warns instead of stopping the run (the DataGate's parameter)."""
    return [] if cfg.content_drift_stops else list(CONTENT_FEATURES)


def skew_validator(statistics, cfg: PipelineConfig) -> DistributionValidator:
    """This run's eval split against its train split."""
    return DistributionValidator(
        statistics=statistics, baseline_statistics=statistics,
        config=comparator_config(cfg),
        include_split_pairs=[SKEW_PAIR]).with_id(pipeline_names.SKEW_VALIDATOR_NODE)


def drift_validator(statistics, baseline_statistics, cfg: PipelineConfig) -> DistributionValidator:
    """This run's train split against the baseline's (the served model's training data). With an
    empty baseline (no blessed model yet, or an unchanged rerun) it compares nothing."""
    return DistributionValidator(
        statistics=statistics, baseline_statistics=baseline_statistics,
        config=comparator_config(cfg),
        include_split_pairs=[DRIFT_PAIR]).with_id(pipeline_names.DRIFT_VALIDATOR_NODE)
