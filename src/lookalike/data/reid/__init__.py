"""Person re-identification data: benchmark readers (:mod:`.readers`) and training sets (:mod:`.datasets`)."""

from lookalike.data.reid.datasets import ReidTrainSet, load_crops
from lookalike.data.reid.readers import (
    BENCHMARKS,
    VIPER_SPLITS,
    ReidBenchmark,
    ReidImages,
    read_benchmark,
    viper_split,
)

__all__ = [
    "BENCHMARKS",
    "VIPER_SPLITS",
    "ReidBenchmark",
    "ReidImages",
    "ReidTrainSet",
    "load_crops",
    "read_benchmark",
    "viper_split",
]
