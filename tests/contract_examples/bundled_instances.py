"""Contract examples of the bundled-photo instance data set (global image descriptors)."""

from __future__ import annotations

import lookalike
from contract_examples import Example

EXAMPLES = {
    "dataset": {
        "bundled_instances": Example(
            build=lambda _: lookalike.create(
                "dataset",
                "bundled_instances",
                photos=["camera"],
                scales=[1.0],
                image_size=32,
                samples_per_class=2,
            ),
            bad_build=lambda _: lookalike.create(
                "dataset", "bundled_instances", photos=["chelsea"], image_size=32
            ),
        ),
    },
}
