"""The recipes lineage ships with, one module each."""

from __future__ import annotations

from lineage.recipes.builtin.distill import DISTILL
from lineage.recipes.builtin.finetune import FINETUNE
from lineage.recipes.builtin.lora import LORA
from lineage.recipes.builtin.merge import MERGE
from lineage.recipes.builtin.prune import PRUNE
from lineage.recipes.builtin.quantize import QUANTIZE

BUILTIN_RECIPES = (FINETUNE, LORA, DISTILL, QUANTIZE, PRUNE, MERGE)

__all__ = ["BUILTIN_RECIPES"]
