"""Contract example of the ``pipeline_pairs`` training data set (pipeline-cut DoG patch pairs)."""

from __future__ import annotations

import lookalike
from contract_examples import Example

EXAMPLES = {
    "dataset": {
        "pipeline_pairs": Example(
            build=lambda _: lookalike.create(
                "dataset", "pipeline_pairs", batch_size=8, photos=["camera"]
            ),
            bad_build=lambda _: lookalike.create("dataset", "pipeline_pairs", photos=["no-such"]),
        ),
    },
}
