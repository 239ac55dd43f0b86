"""The GLDv2 recipes run two steps on a tiny GLDv2-layout fixture through the ``labelled`` task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from image.formats import write_gldv2
from lookalike.core.config import load_config
from lookalike.train.engine import train
from lookalike.train.recipe import TrainRecipe

ROOT = Path(__file__).parents[2]
TINY = {
    "dolg_gldv2.yaml": [
        "model.kwargs.backbone=resnet18",
        "model.kwargs.local_dim=32",
        "model.kwargs.atrous_hidden=8",
        "model.kwargs.dim=16",
    ],
    "hybrid_swin_gldv2.yaml": [
        "model.kwargs.embedder=efficientnet_b0",
        "model.kwargs.swin=swin_tiny_patch4_window7_224",
        "model.kwargs.swin_kwargs={depths: [1, 1, 1, 1], embed_dim: 32, num_heads: [1, 2, 4, 8]}",
        "model.kwargs.pos_grid=8",
        "model.kwargs.dim=16",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(TINY))
def test_gldv2_recipe_runs_two_steps(config, device, tmp_path):
    # On CUDA the recipe's own bfloat16 autocast (AMP) runs; the CPU run keeps float32.
    root = write_gldv2(tmp_path / "gldv2", landmarks=(7, 42, 1000), per_class=3, missing=0)
    overrides = [
        *TINY[config],
        f"data.kwargs.root={root}",
        "data.kwargs.image_size=64",
        "data.kwargs.min_images=1",
        # the labelled task passes num_classes, embedding_dim and the class counts (dynamic margins)
        "steps=2",
        "batch_size=4",
        "optim.warmup_steps=1",
        "checkpoint_every=0",
        f"bf16={str(device.type == 'cuda').lower()}",
        f"device={device.type}",
        f"out_dir={tmp_path / 'runs'}",
    ]
    recipe = load_config(TrainRecipe, ROOT / "configs" / config, overrides)
    torch.manual_seed(0)
    result = train(recipe, progress=False)
    assert len(result.history["loss"]) >= 1 and all(
        torch.isfinite(torch.tensor(result.history["loss"]))
    )
    assert (result.run_dir / "weights.safetensors").is_file()
