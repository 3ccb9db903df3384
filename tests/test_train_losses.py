"""The training objectives against direct computations of the papers' formulas (plain Python math)."""

import math
import random

import pytest
import torch

from lmm_apa.train.losses import (
    answer_positions,
    answer_token_nll,
    dpo_ce_loss,
    dpo_loss,
    first_rows,
    sequence_logps,
    simpo_ce_loss,
    simpo_loss,
)

torch.set_num_threads(2)


def _direct_token_logps(logits, labels):
    """log P(y_t | y_<t) for every answer token, one row at a time, with math.exp / math.log."""
    rows = []
    for b in range(len(labels)):
        out = []
        for t in range(1, len(labels[b])):
            y = labels[b][t]
            if y == -100:
                continue
            z = logits[b][t - 1]
            m = max(z)
            logsum = m + math.log(sum(math.exp(v - m) for v in z))
            out.append(z[y] - logsum)
        rows.append(out)
    return rows


def _batch(seed=0, batch=3, time=9, vocab=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, time, vocab, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, vocab, (batch, time), generator=g)
    labels[:, :4] = -100  # prompt / audio
    labels[1, 7:] = -100  # padding at the end of row 1
    labels[2, 5] = -100  # a hole in the middle
    return logits, labels


def test_sequence_logps_mean_and_sum_match_the_formula():
    logits, labels = _batch()
    direct = _direct_token_logps(logits.tolist(), labels.tolist())
    mean = sequence_logps(logits, labels, average=True)
    total = sequence_logps(logits, labels, average=False)
    for b, toks in enumerate(direct):
        assert len(toks) > 0
        assert total[b].item() == pytest.approx(sum(toks), abs=1e-6)
        assert mean[b].item() == pytest.approx(sum(toks) / len(toks), abs=1e-6)


def test_sequence_logps_ignores_prompt_and_padding_positions():
    logits, labels = _batch()
    before = sequence_logps(logits, labels)
    changed = logits.clone()
    changed[:, 4 - 1 - 1, :] += 100.0  # a position whose next label is -100 for every row
    assert labels[:, 3].eq(-100).all()
    assert torch.allclose(sequence_logps(changed, labels), before)
    empty = torch.full_like(labels, -100)
    assert sequence_logps(logits, empty).abs().max().item() == 0.0


def test_sequence_logps_rejects_misaligned_shapes():
    logits, labels = _batch()
    with pytest.raises(ValueError, match="disagree"):
        sequence_logps(logits[:, :-1], labels)


def test_packed_answer_logits_give_the_same_losses():
    """The trainer asks the model for the answer positions only (``answer_positions`` +
    ``logits_only_at``): the losses read from that packed form equal those from full logits."""
    logits, labels = _batch()
    keep = answer_positions(labels)
    assert keep.sum() == labels[:, 1:].ne(-100).sum()
    assert not keep[:, -1].any()  # the last position predicts nothing
    packed = logits[keep].unsqueeze(0)
    for average in (True, False):
        torch.testing.assert_close(sequence_logps(packed, labels, average=average),
                                   sequence_logps(logits, labels, average=average))
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(answer_token_nll(packed, labels, reduction=reduction),
                                   answer_token_nll(logits, labels, reduction=reduction))
    torch.testing.assert_close(answer_token_nll(*first_rows(packed, labels, 2)),
                               answer_token_nll(logits[:2], labels[:2]))  # SimPO's CE on the chosen rows
    with pytest.raises(ValueError, match="packed"):
        sequence_logps(packed[:, 1:], labels)  # one answer position missing


def test_answer_token_nll_is_the_token_mean_cross_entropy():
    logits, labels = _batch()
    direct = [lp for row in _direct_token_logps(logits.tolist(), labels.tolist()) for lp in row]
    assert answer_token_nll(logits, labels).item() == pytest.approx(-sum(direct) / len(direct), abs=1e-6)


@pytest.mark.parametrize("inside", [True, False])
def test_simpo_loss_matches_equation_1(inside):
    rng = random.Random(1)
    beta, gamma = 0.1, 0.5
    chosen = [rng.uniform(-5, 0) for _ in range(6)]
    rejected = [rng.uniform(-5, 0) for _ in range(6)]
    got = simpo_loss(torch.tensor(chosen, dtype=torch.float64), torch.tensor(rejected, dtype=torch.float64),
                     beta=beta, gamma=gamma, gamma_inside_beta=inside)
    for c, r, g in zip(chosen, rejected, got.tolist()):
        z = beta * (c - r - gamma) if inside else beta * (c - r) - gamma
        assert g == pytest.approx(math.log(1 + math.exp(-z)), abs=1e-6)


def test_simpo_gamma_placement_differs_and_defaults_to_the_seed():
    c, r = torch.tensor([-1.0]), torch.tensor([-2.0])
    seed = simpo_loss(c, r, beta=0.1, gamma=0.5)
    paper = simpo_loss(c, r, beta=0.1, gamma=0.5, gamma_inside_beta=False)
    assert seed.item() == pytest.approx(math.log(1 + math.exp(-0.1 * (1.0 - 0.5))), abs=1e-6)
    assert paper.item() == pytest.approx(math.log(1 + math.exp(-(0.1 * 1.0 - 0.5))), abs=1e-6)
    assert abs(seed.item() - paper.item()) > 0.1


def test_simpo_gradient_raises_chosen_and_lowers_rejected():
    c = torch.tensor([-2.0, -0.5], requires_grad=True)
    r = torch.tensor([-1.0, -3.0], requires_grad=True)
    simpo_loss(c, r).sum().backward()
    assert (c.grad < 0).all()  # descent increases r(y+)
    assert (r.grad > 0).all()  # descent decreases r(y-)
    # d/dc log(1+exp(-b(c-r-g))) = -b * sigmoid(-b(c-r-g))
    z = 0.1 * (torch.tensor([-2.0, -0.5]) - torch.tensor([-1.0, -3.0]) - 0.5)
    assert torch.allclose(c.grad, -0.1 * torch.sigmoid(-z), atol=1e-6)


def test_simpo_loss_is_finite_for_extreme_margins():
    out = simpo_loss(torch.tensor([1e4, -1e4]), torch.tensor([-1e4, 1e4]), beta=1.0)
    assert torch.isfinite(out).all()
    assert out[0].item() == pytest.approx(0.0, abs=1e-6)
    assert out[1].item() == pytest.approx(2e4 + 0.5, rel=1e-6)


def test_simpo_ce_is_equation_3():
    c = torch.tensor([-1.0, -0.2], dtype=torch.float64)
    r = torch.tensor([-1.5, -2.0], dtype=torch.float64)
    ce = torch.tensor(0.7, dtype=torch.float64)
    total, simpo = simpo_ce_loss(c, r, ce, beta=0.1, gamma=0.5, lam=0.1)
    direct = sum(math.log(1 + math.exp(-0.1 * (a - b - 0.5))) for a, b in zip(c.tolist(), r.tolist())) / 2
    assert simpo.item() == pytest.approx(direct, abs=1e-6)
    assert total.item() == pytest.approx(direct + 0.1 * 0.7, abs=1e-6)


def test_dpo_loss_matches_the_formula_and_gradient_sign():
    rng = random.Random(2)
    vals = [[rng.uniform(-30, -5) for _ in range(5)] for _ in range(4)]
    pc, pr, rc, rr = (torch.tensor(v, dtype=torch.float64) for v in vals)
    got = dpo_loss(pc, pr, rc, rr, beta=0.1)
    for i in range(5):
        z = 0.1 * ((vals[0][i] - vals[2][i]) - (vals[1][i] - vals[3][i]))
        assert got[i].item() == pytest.approx(-math.log(1 / (1 + math.exp(-z))), abs=1e-6)
    # policy equal to the reference: log 2
    assert dpo_loss(rc, rr, rc, rr).tolist() == pytest.approx([math.log(2)] * 5, abs=1e-9)
    pc_ = pc.clone().requires_grad_(True)
    pr_ = pr.clone().requires_grad_(True)
    dpo_loss(pc_, pr_, rc, rr).sum().backward()
    assert (pc_.grad < 0).all() and (pr_.grad > 0).all()


def test_dpo_ce_adds_the_weighted_chosen_cross_entropy():
    """L = mean(L_DPO) + w * CE: w = 0 is plain DPO; the CE term's gradient lowers the chosen NLL,
    so with the DPO part fixed the total rises by exactly w * CE."""
    pc, pr, rc, rr = (torch.tensor(v, dtype=torch.float64) for v in ([-3.0, -4.0], [-5.0, -2.0], [-3.5, -4.5], [-4.0, -2.5]))
    plain = dpo_loss(pc, pr, rc, rr, beta=0.1).mean()
    ce = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    total0, dpo0 = dpo_ce_loss(pc, pr, rc, rr, ce, beta=0.1, ce_weight=0.0)
    assert total0.item() == pytest.approx(plain.item(), abs=1e-12) and dpo0.item() == pytest.approx(plain.item(), abs=1e-12)
    direct = sum(math.log(1 + math.exp(-0.1 * ((a - c) - (b - d))))
                 for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())) / 2
    total, dpo = dpo_ce_loss(pc, pr, rc, rr, ce, beta=0.1, ce_weight=0.25)
    assert dpo.item() == pytest.approx(direct, abs=1e-9)
    assert total.item() == pytest.approx(direct + 0.25 * 0.8, abs=1e-9)
    total.backward()
    assert ce.grad.item() == pytest.approx(0.25)


def test_gradient_through_logits_favours_the_chosen_tokens():
    """End to end through sequence_logps: a descent step on SimPO raises the chosen answer's r(y)."""
    logits, labels = _batch(seed=3)
    logits = logits[:2].float().requires_grad_(True)
    labels = labels[:2]
    for _ in range(5):
        r = sequence_logps(logits, labels)
        loss = simpo_loss(r[:1], r[1:], beta=1.0, gamma=0.0).mean()
        (g,) = torch.autograd.grad(loss, logits)
        with torch.no_grad():
            before = sequence_logps(logits, labels)
            logits -= 1.0 * g
            after = sequence_logps(logits, labels)
    assert after[0] > before[0] and after[1] < before[1]
