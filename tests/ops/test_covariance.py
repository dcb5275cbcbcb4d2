"""moegs::quat_scale_to_covar_{fwd,bwd} against gsplat's pure-torch reference."""

import pytest
import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

from moegs.ops.covariance import covar_matrix_to_triu, covar_triu_to_matrix, quat_scale_to_covar

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _inputs(*shape, dtype=torch.float64):
    # Unnormalised quaternions with norms spread over [0.5, 2].
    quats = torch.randn(*shape, 4, dtype=dtype)
    quats = quats / quats.norm(dim=-1, keepdim=True) * (0.5 + 1.5 * torch.rand(*shape, 1, dtype=dtype))
    scales = 0.05 + torch.rand(*shape, 3, dtype=dtype)
    return quats, scales


def _gsplat_covar(quats, scales):
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=True)
    return covars


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_gsplat(dtype):
    quats, scales = _inputs(1000, dtype=dtype)
    got = quat_scale_to_covar(quats, scales)
    assert got.shape == (1000, 6) and got.dtype == dtype
    torch.testing.assert_close(got, _gsplat_covar(quats, scales), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_matches_gsplat_autograd(dtype):
    quats, scales = _inputs(500, dtype=dtype)
    v = torch.randn(500, 6, dtype=dtype)
    q1, s1 = quats.clone().requires_grad_(), scales.clone().requires_grad_()
    (quat_scale_to_covar(q1, s1) * v).sum().backward()
    q2, s2 = quats.clone().requires_grad_(), scales.clone().requires_grad_()
    (_gsplat_covar(q2, s2) * v).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(q1.grad, q2.grad, **tol)
    torch.testing.assert_close(s1.grad, s2.grad, **tol)


def test_gradcheck():
    quats, scales = _inputs(8)
    quats.requires_grad_()
    scales.requires_grad_()
    assert torch.autograd.gradcheck(quat_scale_to_covar, (quats, scales))


def test_batched_leading_dims():
    quats, scales = _inputs(2, 3, 50)
    got = quat_scale_to_covar(quats, scales)
    assert got.shape == (2, 3, 50, 6)
    flat = quat_scale_to_covar(quats.reshape(-1, 4), scales.reshape(-1, 3))
    assert torch.equal(got.reshape(-1, 6), flat)
    torch.testing.assert_close(got, _gsplat_covar(quats, scales), **TOL[torch.float64])


def test_non_contiguous_inputs():
    quats, scales = _inputs(40, 2)
    q, s = quats[:, 1], scales[:, 1]
    assert not q.is_contiguous()
    assert torch.equal(quat_scale_to_covar(q, s), quat_scale_to_covar(q.contiguous(), s.contiguous()))


def test_triu_matrix_round_trip():
    quats, scales = _inputs(20)
    full, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    triu = covar_matrix_to_triu(full)
    torch.testing.assert_close(covar_triu_to_matrix(triu), full, rtol=0, atol=1e-15)
    torch.testing.assert_close(triu, quat_scale_to_covar(quats, scales), **TOL[torch.float64])


@pytest.mark.parametrize(
    "qshape, sshape",
    [((10, 3), (10, 3)), ((10, 4), (10, 2)), ((10, 4), (9, 3)), ((2, 10, 4), (10, 3))],
)
def test_bad_shapes_raise(qshape, sshape):
    with pytest.raises(ValueError, match="quat_scale_to_covar"):
        quat_scale_to_covar(torch.randn(qshape), torch.rand(sshape))


def test_op_rejects_bad_inputs():
    quats, scales = _inputs(5)
    with pytest.raises(RuntimeError, match="share a dtype"):
        torch.ops.moegs.quat_scale_to_covar_fwd(quats, scales.float())
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.moegs.quat_scale_to_covar_fwd(quats.int(), scales.int())
    with pytest.raises(RuntimeError, match="disagree on M"):
        torch.ops.moegs.quat_scale_to_covar_fwd(quats, scales[:4])
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        covar_matrix_to_triu(torch.zeros(4, 3))
