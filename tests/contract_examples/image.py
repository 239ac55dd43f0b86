"""Contract examples of the global image family: margin losses, pooling layers, retrieval protocols, data."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from contract_examples import Example


def _rows(n: int = 8, d: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)


def _class_inputs(_):
    return (_rows(), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))


def _class_bad(_):
    return (_rows(), torch.tensor([0, 1, 2, 3]))


def _feature_map(_):
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(2, 4, 5, 6, generator=gen, dtype=torch.float64),)


def _bad_map(_):
    return (torch.rand(2, 4, 5),)


def _fixture_benchmark(tmp):
    from image.formats import write_ukbench
    from lookalike.eval.protocols.retrieval import load_benchmark

    return load_benchmark("ukbench", write_ukbench(tmp, groups=3))


def _empty_benchmark(_):
    from lookalike.eval.protocols.retrieval import RetrievalBenchmark

    return ("color-hist", RetrievalBenchmark(name="empty", kind="ukbench", database=[]))


def _image_folders(tmp):
    import lookalike
    from image.formats import write_image_folders

    return lookalike.create(
        "dataset", "image_folders", root=write_image_folders(tmp), image_size=32
    )


def _gldv2(tmp):
    import lookalike
    from image.formats import write_gldv2

    return lookalike.create("dataset", "gldv2", root=write_gldv2(tmp), image_size=32)


def _missing(name):
    def build(tmp):
        import lookalike

        return lookalike.create("dataset", name, root=tmp)

    return build


EXAMPLES = {
    "loss": {
        "cosface": Example(
            kwargs={"num_classes": 4, "embedding_dim": 16}, inputs=_class_inputs, bad=_class_bad
        ),
    },
    "layer": {
        "gem": Example(inputs=_feature_map, bad=_bad_map, out_shape=(2, 4)),
        "mac": Example(inputs=_feature_map, bad=_bad_map, out_shape=(2, 4)),
        "spoc": Example(inputs=_feature_map, bad=_bad_map, out_shape=(2, 4)),
    },
    "protocol": {
        "retrieval": Example(
            kwargs={"rerank": ["dba", "aqe"]},
            inputs=lambda tmp: ("color-hist", _fixture_benchmark(tmp)),
            bad=_empty_benchmark,
        ),
    },
    "dataset": {
        "image_folders": Example(
            build=_image_folders,
            bad_build=_missing("image_folders"),
        ),
        "gldv2": Example(
            build=_gldv2,
            bad_build=_missing("gldv2"),
        ),
    },
}
