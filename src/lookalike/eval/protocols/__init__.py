"""Evaluation protocols (kind ``protocol``) and the library functions that run them.

Every registered protocol has ONE call signature::

    protocol = lookalike.create("protocol", name, **options)   # options: keyword-only, checked here
    result = protocol(describer, data)                          # -> dict of numbers

- ``describer``: what is evaluated. For the patch protocols a patch descriptor (``(B, C, p, p)`` float
  in [0, 1] -> ``(B, D)``, described through :func:`lookalike.descriptors.describe.describe_patches`)
  or a registered spec string (``"sift"``, ``"hardnet:bundled"``); for ``homography_matching`` also a
  baseline spec (``"opencv-sift"``) or a configured :class:`~lookalike.matching.pipeline.ImageMatcher`.
- ``data``: the evaluation data, in the form its reader returns it.
- ``result``: a dict of named numbers, so protocols can be tabulated and stored alike.

The options live in the constructor (dataclasses where several functions share them, e.g.
:class:`~lookalike.eval.protocols.hpatches.HPatchesOptions`), never in the call, so one configured
protocol evaluates many descriptors the same way. Why ``(describer, data)``: a protocol owns the
describe step (one resize rule, the patches it needs), which is what makes the numbers of two entry
points comparable.

========================  ==============================================  ==========================
name                      data                                            result keys
========================  ==============================================  ==========================
``fpr95``                 PhotoTour subset (pairs)                        ``fpr95``
``brown_snn_map``         PhotoTour subset (``interest.txt`` groups)      ``snn_map``
``phototour``             PhotoTour subset                                ``fpr95``, ``snn_map``
``hpatches``              list of ``PatchSequence``                       ``<task>/<difficulty>``...
``homography_matching``   list of ``HomographySequence`` or a folder      ``mma``, ``homography_accuracy``...
``relative_pose``         ScanNet-style pairs or a folder                 ``auc@5/10/20``, ``precision``...
``retrieval``             a retrieval benchmark (UKBench, scenes, ...)    ``mAP``, ``N-S``, ...
``reid``                  a re-ID benchmark (query / gallery)             ``rank-1..20``, ``mAP``, ``mINP``
========================  ==============================================  ==========================

Library orchestration (the CLI only renders their results): :func:`run_patch_table` /
:func:`evaluate_patch_table` (all descriptors on the same patches), :func:`run_matching` /
:func:`evaluate_matching` (image matching on homography sequences), :func:`run_demo` (the bundled-photo
demo).
"""

from lookalike.eval.protocols.demo import DemoResult, demo_pairs, run_demo
from lookalike.eval.protocols.homography import (
    HomographyMatchingProtocol,
    MatchingOptions,
    MatchingReport,
    PairResult,
    evaluate_matching,
    run_matching,
    summarize,
)
from lookalike.eval.protocols.hpatches import (
    DescribedSequence,
    HPatchesOptions,
    HPatchesProtocol,
    describe_sequences,
    evaluate_described,
    evaluate_patch_descriptor,
)
from lookalike.eval.protocols.patch_table import (
    PatchTable,
    PatchTableRow,
    evaluate_patch_table,
    run_patch_table,
)
from lookalike.eval.protocols.phototour import (
    FPR95,
    BrownSNNMap,
    PhotoTourProtocol,
    phototour_evaluate,
)
from lookalike.eval.protocols.sequences import find_evaluation_sequences

__all__ = [
    "FPR95",
    "BrownSNNMap",
    "DemoResult",
    "DescribedSequence",
    "HPatchesOptions",
    "HPatchesProtocol",
    "HomographyMatchingProtocol",
    "MatchingOptions",
    "MatchingReport",
    "PairResult",
    "PatchTable",
    "PatchTableRow",
    "PhotoTourProtocol",
    "demo_pairs",
    "describe_sequences",
    "evaluate_described",
    "evaluate_matching",
    "evaluate_patch_descriptor",
    "evaluate_patch_table",
    "find_evaluation_sequences",
    "phototour_evaluate",
    "run_demo",
    "run_matching",
    "run_patch_table",
    "summarize",
]
