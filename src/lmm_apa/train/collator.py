"""Batches for the trainer: the backbone's own ``build_batch`` does the chat template, audio features
and answer-only labels; the collators only decide what goes in.

- SFT: one row per example, labels on the answer tokens only (prompt, audio, padding are -100).
- Preference (SimPO, DPO): chosen and rejected responses in ONE concatenated batch, rows
  ``[chosen_1..chosen_n, rejected_1..rejected_n]`` with the same audio and prompt, so a single
  forward pass scores both (TRL's ``concatenated_forward``). The trainer splits the rows at n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SFTCollator:
    backbone: Any

    def __call__(self, items: list[dict]) -> dict:
        batch = self.backbone.build_batch(
            [it["audio"] for it in items], [it["prompt"] for it in items], [it["target"] for it in items]
        )
        return dict(batch)


@dataclass
class PreferenceCollator:
    backbone: Any

    def __call__(self, items: list[dict]) -> dict:
        missing = [it["id"] for it in items if it.get("rejected") is None]
        if missing:
            raise ValueError(f"preference batch without rejected responses for {missing}")
        audios = [it["audio"] for it in items]
        prompts = [it["prompt"] for it in items]
        batch = self.backbone.build_batch(
            audios + audios, prompts + prompts, [it["target"] for it in items] + [it["rejected"] for it in items]
        )
        return dict(batch)
