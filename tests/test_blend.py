import pytest
import torch

import moegs


def test_blend_is_softmax_weighted_sum():
    colors = torch.rand(2, 3, 5, 4, 3, dtype=torch.float64)
    logits = torch.randn(2, 3, 5, 4, 1, dtype=torch.float64)
    out, w = moegs.blend_experts(colors, logits, temperature=0.7, return_weights=True)
    e = torch.exp(logits / 0.7)
    want = (e * colors).sum(1) / e.sum(1)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 5, 4, 1, dtype=torch.float64))
    out2 = moegs.blend_experts(colors, logits[..., 0], temperature=0.7)
    torch.testing.assert_close(out2, want)


def test_blend_gradcheck():
    colors = torch.rand(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(3, 2, 2, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, l: moegs.blend_experts(c, l, 2.0), (colors, logits))


def test_blend_bad_input():
    with pytest.raises(ValueError, match="gate_logits"):
        moegs.blend_experts(torch.rand(3, 4, 4, 3), torch.rand(2, 4, 4, 1))
    with pytest.raises(ValueError, match="temperature"):
        moegs.blend_experts(torch.rand(3, 4, 4, 3), torch.rand(3, 4, 4, 1), temperature=0)
