"""The training objectives as pure functions of tensors (TRL style): no model, no trainer, no state.

Why pure: the formulas are the part of a preference method that is easiest to get subtly wrong (a
sign, where the margin sits, sum vs mean), so they live where a test can compare them with a direct
computation of the paper's equations. The trainer (``lmm_apa.train.trainer``) only wires them up.

Wang et al. 2025 (eq. 1-3):

- ``r(y) = 1/|y| * sum_t log P(y_t | y_<t)``  -- ``sequence_logps(..., average=True)``
- ``L_SimPO = log(1 + exp(-beta * (r(y+) - r(y-) - gamma)))``  -- ``simpo_loss`` (gamma INSIDE
  the beta bracket, as Wang et al. 2025 write it; the SimPO paper puts it outside:
  ``-log sigmoid(beta * (r(y+) - r(y-)) - gamma)``; ``gamma_inside_beta`` picks the placement)
- ``L = L_SimPO + lambda * L_CE`` (CE on the chosen response)  -- ``simpo_ce_loss``

DPO (Rafailov et al. 2023): ``-log sigmoid(beta * ((pi+ - ref+) - (pi- - ref-)))`` on summed
log-probabilities -- ``dpo_loss``; ``dpo_ce_loss`` adds ``w * L_CE`` on the chosen answer (the
analogue of Wang et al. 2025's eq. 3 for DPO, off by default: ``dpo_ce_weight: 0``), which keeps a
preference run that starts from an SFT model from drifting away from the answer format.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmm_apa.models.backbones.base import IGNORE_INDEX


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """``(batch, time)`` bool mask of the positions whose logit predicts an answer token (position t
    predicts the label at t+1). Passed to ``lmm_apa.models.logits.logits_only_at``, the model then
    returns only these logits, packed as ``(1, n, vocab)``; the functions below take that packed form
    as well as full ``(batch, time, vocab)`` logits, with the same results."""
    keep = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def _answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(answer-position logits ``(n, vocab)``, their target ids ``(n,)``, the ``(batch, time-1)``
    mask of answer targets), from full logits or from the packed ``(1, n, vocab)`` form."""
    shifted = labels[:, 1:]
    mask = shifted != IGNORE_INDEX
    if logits.dim() == 3 and logits.shape[:2] == labels.shape:
        picked = logits[:, :-1, :][mask]
    elif logits.dim() == 3 and logits.shape[0] == 1 and logits.shape[1] == int(mask.sum()):
        picked = logits[0]  # packed by answer_positions: already the answer positions, row-major
    else:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree: expected (batch, time, "
            f"vocab) logits or the packed form (1, {int(mask.sum())} answer positions, vocab)"
        )
    return picked, shifted[mask], mask


def first_rows(logits: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` of the batch's first ``n`` rows (the chosen half of a preference batch),
    from full or packed logits (packing is row-major, so those rows' positions come first)."""
    if logits.dim() == 3 and logits.shape[:2] == labels.shape:
        return logits[:n], labels[:n]
    return logits[:, : int(labels[:n, 1:].ne(IGNORE_INDEX).sum())], labels[:n]


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, average: bool = True) -> torch.Tensor:
    """Log-likelihood of each row's answer tokens: mean per token (Wang et al. 2025's r(y)) or sum (DPO).

    ``labels`` are aligned with the input ids as transformers' causal LMs expect (the logit at
    position t predicts the token at t+1); positions marked -100 (prompt, audio, padding) do not
    count. ``logits`` are the full ``(batch, time, vocab)`` or only the answer positions, packed
    (see ``answer_positions``). Only answer positions go through log_softmax, so memory stays at
    (answer tokens x vocab) rather than (sequence x vocab). A row with no answer token gives 0.
    """
    picked, targets, mask = _answer_logits(logits, labels)
    token_logps = torch.zeros(mask.shape, dtype=torch.float32, device=picked.device)
    if mask.any():
        token_logps[mask] = picked.float().log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    total = token_logps.sum(dim=-1)
    if not average:
        return total
    return total / mask.sum(dim=-1).clamp(min=1)


def answer_token_nll(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over all answer tokens of the batch: token mean (the SFT loss, and L_CE) or sum
    (the trainer divides the sum by the token count of the whole accumulated, all-device batch).
    ``logits`` full or packed, as in ``sequence_logps``; only answer positions are upcast to float32."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    picked, targets, mask = _answer_logits(logits, labels)
    total = F.cross_entropy(picked.float(), targets, reduction="sum")
    return total if reduction == "sum" else total / mask.sum().clamp(min=1)


def simpo_loss(
    chosen_r: torch.Tensor,
    rejected_r: torch.Tensor,
    beta: float = 0.1,
    gamma: float = 0.5,
    gamma_inside_beta: bool = True,
) -> torch.Tensor:
    """Per-pair SimPO loss. ``chosen_r`` / ``rejected_r`` are mean token log-likelihoods r(y).

    ``gamma_inside_beta=True``: Wang et al. 2025 eq. 1, ``log(1 + exp(-beta * (r+ - r- - gamma)))``.
    ``False``: the SimPO paper, ``log(1 + exp(-(beta * (r+ - r-) - gamma)))``.
    ``softplus(-z)`` is ``log(1 + exp(-z))`` computed without overflow.
    """
    diff = chosen_r - rejected_r
    z = beta * (diff - gamma) if gamma_inside_beta else beta * diff - gamma
    return F.softplus(-z)


def simpo_ce_loss(
    chosen_r: torch.Tensor,
    rejected_r: torch.Tensor,
    chosen_ce: torch.Tensor,
    beta: float = 0.1,
    gamma: float = 0.5,
    lam: float = 0.1,
    gamma_inside_beta: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wang et al. 2025 eq. 3: ``L = mean(L_SimPO) + lambda * L_CE``; returns (total, mean L_SimPO)."""
    simpo = simpo_loss(chosen_r, rejected_r, beta=beta, gamma=gamma, gamma_inside_beta=gamma_inside_beta).mean()
    return simpo + lam * chosen_ce, simpo


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """Per-pair DPO loss ``-log sigmoid(beta * ((pi+ - ref+) - (pi- - ref-)))`` on summed log-probs."""
    z = beta * ((policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps))
    return F.softplus(-z)


def dpo_ce_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_ce: torch.Tensor,
    beta: float = 0.1,
    ce_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``L = mean(L_DPO) + ce_weight * L_CE`` (CE: token-mean NLL of the chosen answers); returns
    (total, mean L_DPO). With ``ce_weight`` 0 the total is plain DPO."""
    dpo = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=beta).mean()
    return dpo + ce_weight * chosen_ce, dpo
