"""Contract examples of the index backends (kind ``index``)."""

from __future__ import annotations

import lookalike
from contract_examples import Example

EXAMPLES = {
    "index": {
        "flat": Example(kwargs={"dim": 8, "metric": "l2"}),
        "faiss": Example(kwargs={"dim": 8, "factory": "HNSW16"}),
        "milvus": Example(
            build=lambda tmp: lookalike.create("index", "milvus", dim=8, uri=str(tmp / "m.db"))
        ),
    }
}
