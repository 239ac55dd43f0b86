"""What the matching protocols share (``eval/protocols/_common.py``): the report rows, the
describe-then-score loop over matchers (keypoints detected once per detector setting), the matchers
built from specs and the version stamp; checked with fake matchers whose calls are logged."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lookalike.core.errors import EmptyInputError
from lookalike.eval.protocols._common import (
    MatcherReport,
    make_matchers,
    run_matchers,
    version_stamp,
)


@dataclass
class _FakeMatcher:
    """Detects ``"kp<image>/<max_keypoints>"``; features are ``(image, keypoints, own name)``."""

    name: str
    max_keypoints: int
    log: list = field(default_factory=list)
    detector: str = "dog"
    upright: bool = False
    max_size: int | None = None
    detector_options: dict = field(default_factory=dict)

    def detect(self, image):
        self.log.append(("detect", self.name, image))
        return f"kp{image}/{self.max_keypoints}"

    def features(self, image, keypoints):
        return (image, keypoints, self.name)


def test_run_matchers_detects_once_per_setting_and_scores_every_matcher():
    log: list = []
    matchers = {
        "a": _FakeMatcher("a", 100, log),
        "b": _FakeMatcher("b", 100, log),  # same detector settings as "a": reuses its keypoints
        "c": _FakeMatcher("c", 50, log),
    }
    report = MatcherReport.for_labels(list(matchers), thresholds=(1.0,))
    calls: list = []

    def score(matcher, feats):
        return [f"{matcher.name}:{f[0]}:{f[1]}:{f[2]}" for f in feats]

    run_matchers(report, matchers, [0, 1], score, name="seq", progress=lambda *a: calls.append(a))
    assert log == [
        ("detect", "a", 0),
        ("detect", "a", 1),
        ("detect", "c", 0),
        ("detect", "c", 1),
    ]
    assert report.pairs == {
        "a": ["a:0:kp0/100:a", "a:1:kp1/100:a"],
        "b": ["b:0:kp0/100:b", "b:1:kp1/100:b"],
        "c": ["c:0:kp0/50:c", "c:1:kp1/50:c"],
    }
    assert calls == [("a", "seq"), ("b", "seq"), ("c", "seq")]
    assert all(s >= 0.0 for s in report.seconds.values()) and report.descriptors == ["a", "b", "c"]
    # a second item appends to the rows and adds to the seconds
    before = dict(report.seconds)
    run_matchers(report, matchers, [7], lambda m, f: [len(f)], name="next")
    assert report.pairs["c"][-1] == 1 and len(report.pairs["a"]) == 3
    assert all(report.seconds[k] >= before[k] for k in before)


def test_report_subclasses_keep_their_own_threshold_defaults():
    from lookalike.eval.metrics.matching import MMA_THRESHOLDS
    from lookalike.eval.metrics.pose import AUC_THRESHOLDS
    from lookalike.eval.protocols.homography import MatchingReport
    from lookalike.eval.protocols.pose import PoseReport

    assert MatchingReport().thresholds == tuple(MMA_THRESHOLDS)
    assert PoseReport().thresholds == tuple(AUC_THRESHOLDS)
    report = PoseReport.for_labels(["x"], thresholds=(5.0,))
    assert isinstance(report, PoseReport) and report.pairs == {"x": []} and report.config == {}
    assert MatcherReport().pairs is not MatcherReport().pairs  # no shared mutable default


def test_make_matchers_and_version_stamp():
    import lookalike

    matchers = make_matchers(["sift", "rootsift"], {"max_keypoints": 10, "geometry": "none"})
    assert list(matchers) == ["sift", "rootsift"]
    assert all(m.max_keypoints == 10 and m.geometry == "none" for m in matchers.values())
    with pytest.raises(EmptyInputError):
        make_matchers([], {})
    stamp = version_stamp()
    assert set(stamp) == {"lookalike", "git"} and stamp["lookalike"] == lookalike.__version__


def test_matcher_options_are_shared_by_both_protocols_in_the_same_order():
    from dataclasses import fields

    from lookalike.eval.protocols._common import MatcherOptions
    from lookalike.eval.protocols.homography import MatchingOptions
    from lookalike.eval.protocols.pose import PoseOptions

    shared = ["matcher", "detector", "max_keypoints", "ratio_threshold"]
    assert [f.name for f in fields(MatchingOptions)] == [
        *shared,
        "ransac_threshold",
        "thresholds",
        "views",
    ]
    assert [f.name for f in fields(PoseOptions)][:5] == [*shared, "ransac_threshold"]
    base = {"matcher": "snn", "detector": "hessian", "max_keypoints": 7, "ratio_threshold": 0.8}
    assert MatcherOptions(**base).matcher_kwargs() == base
    assert MatchingOptions(**base, ransac_threshold=2.0).matcher_kwargs() == {
        **base,
        "ransac_threshold": 2.0,
    }
    assert MatchingOptions(**base, views="asift").matcher_kwargs() == {
        **base,
        "ransac_threshold": None,
        "views": "asift",
    }
    assert PoseOptions(**base).matcher_kwargs() == {**base, "geometry": "none"}
    assert MatchingOptions("snn", "hessian", 7, 0.8) == MatchingOptions(**base)  # positional order


def test_network_precisions_record_what_the_fused_networks_run_in():
    from lookalike.eval.protocols._common import network_precisions
    from lookalike.matching.describe import auto_precision

    matchers = make_matchers(["sift", "hardnet:bundled"], {"max_keypoints": 10})
    expected = {"bfloat16": "bfloat16", "int8": "qint8", "float32": "float32"}[
        auto_precision("cpu", model=matchers["hardnet:bundled"].describer.model)
    ]
    assert network_precisions(matchers) == {"hardnet:bundled": expected}  # SIFT runs no network
    unfused = make_matchers(["hardnet:bundled"], {"descriptor_options": {"fuse": False}})
    assert network_precisions(unfused) == {}
