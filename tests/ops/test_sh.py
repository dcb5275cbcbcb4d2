import pytest
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics

from moegs.ops import _reference as ref
from moegs.ops.sh import spherical_harmonics

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _inputs(m, kc, dtype, dc=None, batch=()):
    # Unnormalised directions with norms spread over several orders of magnitude.
    dirs = torch.randn(*batch, m, 3, dtype=dtype) * torch.logspace(-2, 2, m, dtype=dtype)[:, None]
    coeffs = torch.randn(*batch, m, kc, 3, dtype=dtype) * 0.5
    if dc is None:
        coeffs[..., 0, :] *= 6  # spread the DC term so that some channels clamp
    else:
        coeffs[..., 0, :] = dc
    return dirs, coeffs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("extra", [0, 5])
def test_forward_matches_gsplat(degree, dtype, extra):
    kc = (degree + 1) ** 2 + extra
    dirs, coeffs = _inputs(500, kc, dtype)
    out = spherical_harmonics(degree, dirs, coeffs)
    expected = (_spherical_harmonics(degree, dirs, coeffs) + 0.5).clamp_min(0)
    assert out.dtype == dtype and out.shape == (500, 3)
    assert (out == 0).any() and (out > 0).any()  # both sides of the clamp are exercised
    torch.testing.assert_close(out, expected, **TOL[dtype])
    torch.testing.assert_close(ref.spherical_harmonics(degree, dirs, coeffs), expected, **TOL[dtype])


def test_leading_dims_are_flattened_and_restored():
    dirs, coeffs = _inputs(7, 16, torch.float64, batch=(2, 3))
    out = spherical_harmonics(3, dirs, coeffs)
    assert out.shape == (2, 3, 7, 3)
    flat = spherical_harmonics(3, dirs.reshape(-1, 3), coeffs.reshape(-1, 16, 3))
    assert torch.equal(out.reshape(-1, 3), flat)


def test_non_contiguous_inputs():
    dirs, coeffs = _inputs(40, 16, torch.float64)
    dirs_t = dirs.t().contiguous().t()
    coeffs_t = coeffs.transpose(0, 1).contiguous().transpose(0, 1)
    assert not dirs_t.is_contiguous() and not coeffs_t.is_contiguous()
    assert torch.equal(spherical_harmonics(2, dirs_t, coeffs_t), spherical_harmonics(2, dirs, coeffs))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_gradcheck(degree):
    # DC term keeps every channel well above the clamp.
    dirs, coeffs = _inputs(6, (degree + 1) ** 2 + 2, torch.float64, dc=6.0)
    dirs.requires_grad_(True)
    coeffs.requires_grad_(True)
    assert (spherical_harmonics(degree, dirs, coeffs) > 0.1).all()
    assert torch.autograd.gradcheck(lambda d, c: spherical_harmonics(degree, d, c), (dirs, coeffs))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_vjp_matches_twin_float32(degree):
    kc = (degree + 1) ** 2 + 3
    dirs, coeffs = _inputs(2000, kc, torch.float32)
    v = torch.randn(2000, 3)
    grads = []
    for fn in (spherical_harmonics, ref.spherical_harmonics):
        d = dirs.clone().requires_grad_(True)
        c = coeffs.clone().requires_grad_(True)
        g = torch.autograd.grad((fn(degree, d, c) * v).sum(), (d, c), allow_unused=True)
        grads.append([torch.zeros_like(x) if gx is None else gx for gx, x in zip(g, (d, c))])
    (vd, vc), (vd_ref, vc_ref) = grads
    # v_dirs scales like 1 / |dirs|, which spans 1e-2 .. 1e2 here.
    scale = dirs.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(vd * scale, vd_ref * scale, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(vc, vc_ref, rtol=1e-5, atol=1e-6)
    nb = (degree + 1) ** 2
    assert torch.all(vc[:, nb:] == 0)
    if degree == 0:
        assert torch.all(vd == 0)


def test_gradient_is_cut_where_clamped():
    dirs, coeffs = _inputs(50, 9, torch.float64, dc=-10.0)
    dirs.requires_grad_(True)
    coeffs.requires_grad_(True)
    out = spherical_harmonics(2, dirs, coeffs)
    assert torch.all(out == 0)
    vd, vc = torch.autograd.grad(out.sum(), (dirs, coeffs))
    assert torch.all(vd == 0) and torch.all(vc == 0)


def test_only_requested_gradients():
    dirs, coeffs = _inputs(10, 16, torch.float64, dc=3.0)
    coeffs.requires_grad_(True)
    (vc,) = torch.autograd.grad(spherical_harmonics(3, dirs, coeffs).sum(), (coeffs,))
    assert vc.shape == coeffs.shape
    colors = torch.ops.moegs.spherical_harmonics_fwd(3, dirs, coeffs.detach())
    v_dirs, _ = torch.ops.moegs.spherical_harmonics_bwd(3, dirs, coeffs.detach(), colors,
                                                        torch.ones_like(colors), False)
    assert v_dirs.shape == (0,)


def test_zero_direction_is_finite_like_the_twin():
    dirs = torch.zeros(3, 3, dtype=torch.float64)
    coeffs = torch.randn(3, 16, 3, dtype=torch.float64)
    out = spherical_harmonics(3, dirs, coeffs)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref.spherical_harmonics(3, dirs, coeffs))


def test_opcheck():
    dirs, coeffs = _inputs(8, 16, torch.float64, dc=3.0)
    torch.library.opcheck(torch.ops.moegs.spherical_harmonics_fwd, (3, dirs, coeffs.requires_grad_(True)))
    colors = torch.ops.moegs.spherical_harmonics_fwd(3, dirs, coeffs.detach())
    for flag in (True, False):
        torch.library.opcheck(
            torch.ops.moegs.spherical_harmonics_bwd,
            (3, dirs, coeffs.detach(), colors, torch.randn_like(colors), flag),
        )


def test_bad_inputs():
    dirs, coeffs = _inputs(4, 9, torch.float32)
    with pytest.raises(ValueError, match="degree"):
        spherical_harmonics(4, dirs, torch.zeros(4, 25, 3))
    with pytest.raises(ValueError, match="degree"):
        spherical_harmonics(-1, dirs, coeffs)
    with pytest.raises(TypeError, match="degree"):
        spherical_harmonics(1.0, dirs, coeffs)
    with pytest.raises(ValueError, match="Kc >= 16"):
        spherical_harmonics(3, dirs, coeffs)
    with pytest.raises(ValueError, match="dirs"):
        spherical_harmonics(1, dirs[:, :2], coeffs)
    with pytest.raises(ValueError, match="coeffs"):
        spherical_harmonics(1, dirs, coeffs[:3])
    with pytest.raises(ValueError, match="coeffs"):
        spherical_harmonics(1, dirs, coeffs[..., :2])
    with pytest.raises(TypeError, match="dtype"):
        spherical_harmonics(1, dirs, coeffs.double())
    with pytest.raises(TypeError, match="dtype"):
        spherical_harmonics(1, dirs.half(), coeffs.half())
    # The op itself checks too (callers that skip the wrapper).
    with pytest.raises(RuntimeError, match="degree must be in 0..3"):
        torch.ops.moegs.spherical_harmonics_fwd(4, dirs, torch.zeros(4, 25, 3))
    with pytest.raises(RuntimeError, match="needs 16 coefficients"):
        torch.ops.moegs.spherical_harmonics_fwd(3, dirs, coeffs)
    with pytest.raises(RuntimeError, match="disagree on M"):
        torch.ops.moegs.spherical_harmonics_fwd(1, dirs, coeffs[:2])
