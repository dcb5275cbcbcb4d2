"""Brute-force float64 model of the 3DGS (diff-gaussian-rasterization) renderer, pixel by pixel.

Independent of moegs's ops: every Gaussian is evaluated at every pixel centre
(integer coordinates) and composited front to back in plain PyTorch. Also camera
matrices in the 3DGS conventions (transposed, row-vector).
"""

import math

import torch
from gsplat.cuda._torch_impl import _spherical_harmonics


def projection_matrix(znear, zfar, fovx, fovy, dx=0.0, dy=0.0):
    """``[4, 4]`` OpenGL-style perspective (column vectors), frustum shifted by (dx, dy) NDC units."""
    tx, ty = math.tan(fovx / 2), math.tan(fovy / 2)
    r, l = tx * znear * (1 + dx), -tx * znear * (1 - dx)
    t, b = ty * znear * (1 + dy), -ty * znear * (1 - dy)
    P = torch.zeros(4, 4, dtype=torch.float64)
    P[0, 0] = 2 * znear / (r - l)
    P[1, 1] = 2 * znear / (t - b)
    P[0, 2] = (r + l) / (r - l)
    P[1, 2] = (t + b) / (t - b)
    P[3, 2] = 1.0
    P[2, 2] = zfar / (zfar - znear)
    P[2, 3] = -(zfar * znear) / (zfar - znear)
    return P


def look_at_w2c(eye, target):
    """``[4, 4]`` world-to-camera (OpenCV axes) of a camera at ``eye`` looking at ``target``; world up is -y."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    fwd = torch.as_tensor(target, dtype=torch.float64) - eye
    fwd = fwd / fwd.norm()
    down = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    right = torch.linalg.cross(down, fwd)
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])  # rows: camera axes in world coordinates
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M


def camera(eye, target, width, height, fovx, dx=0.0, dy=0.0, dtype=torch.float64):
    """(viewmatrix, projmatrix, campos, tanfovx, tanfovy) in the 3DGS conventions."""
    fovy = 2 * math.atan(math.tan(fovx / 2) * height / width)
    w2c = look_at_w2c(eye, target)
    view = w2c.T
    full = view @ projection_matrix(0.01, 100.0, fovx, fovy, dx, dy).T
    campos = torch.linalg.inv(w2c)[:3, 3]
    return view.to(dtype), full.to(dtype), campos.to(dtype), math.tan(fovx / 2), math.tan(fovy / 2)


def quat_to_rotmat(q):
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def cov_from_scale_rot(scales, rotations):
    """``[N, 3, 3]`` world covariances."""
    M = quat_to_rotmat(rotations) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def render_reference(means3d, ndc_offset, opacities, colors, cov3d, view, proj, tanfovx, tanfovy,
                     width, height, bg, antialiasing=False):
    """Renders like diff-gaussian-rasterization, brute force.

    Args:
        means3d ``[N, 3]``; ndc_offset ``[N, 2]`` added to each projected NDC centre (its
        gradient is what ``means2D.grad[:, :2]`` must hold); opacities ``[N]``; colors ``[N, D]``;
        cov3d ``[N, 3, 3]``; view/proj ``[4, 4]`` transposed matrices; bg ``[D]``.

    Returns:
        color ``[D, H, W]``, radii ``[N]`` (int64), invdepth ``[1, H, W]``.
    """
    N = means3d.shape[0]
    hom = torch.cat([means3d, torch.ones(N, 1, dtype=means3d.dtype)], 1)
    pv = hom @ view  # [N, 4]
    z = pv[:, 2]
    clip = hom @ proj
    ndc = clip[:, :2] / (clip[:, 3:4] + 1e-7) + ndc_offset
    px = ((ndc[:, 0] + 1) * width - 1) / 2
    py = ((ndc[:, 1] + 1) * height - 1) / 2

    fx, fy = width / (2 * tanfovx), height / (2 * tanfovy)
    Rcw = view[:3, :3].T
    conics, radii, scale_aa, rects = [], [], [], []
    tiles_x, tiles_y = (width + 15) // 16, (height + 15) // 16
    for i in range(N):
        if z[i] <= 0.2:
            conics.append(None)
            radii.append(0)
            scale_aa.append(None)
            rects.append(None)
            continue
        zi = z[i]
        xz = torch.clamp(pv[i, 0] / zi, -1.3 * tanfovx, 1.3 * tanfovx)
        yz = torch.clamp(pv[i, 1] / zi, -1.3 * tanfovy, 1.3 * tanfovy)
        J = torch.stack([
            torch.stack([fx / zi, zi * 0, -fx * xz / zi]),
            torch.stack([zi * 0, fy / zi, -fy * yz / zi]),
        ])
        S2 = J @ Rcw @ cov3d[i] @ Rcw.T @ J.T
        d0 = torch.det(S2)
        S2 = S2 + 0.3 * torch.eye(2, dtype=S2.dtype)
        d1 = torch.det(S2)
        if d1 == 0:
            conics.append(None)
            radii.append(0)
            scale_aa.append(None)
            rects.append(None)
            continue
        inv = torch.linalg.inv(S2)
        ev = torch.linalg.eigvalsh(S2.detach())
        lam = max(float(ev.max()), float(0.5 * S2[0, 0].detach() + 0.5 * S2[1, 1].detach()) + math.sqrt(0.1))
        r = math.ceil(3 * math.sqrt(lam))
        mx, my = float(px[i].detach()), float(py[i].detach())
        x0 = min(tiles_x, max(0, int((mx - r) / 16)))
        x1 = min(tiles_x, max(0, int((mx + r + 15) / 16)))
        y0 = min(tiles_y, max(0, int((my - r) / 16)))
        y1 = min(tiles_y, max(0, int((my + r + 15) / 16)))
        if (x1 - x0) * (y1 - y0) == 0:
            conics.append(None)
            radii.append(0)
            scale_aa.append(None)
            rects.append(None)
            continue
        conics.append(inv)
        radii.append(r)
        scale_aa.append(torch.sqrt(torch.clamp(d0 / d1, min=2.5e-5)) if antialiasing else None)
        rects.append((x0, x1, y0, y1))

    ys, xs = torch.meshgrid(torch.arange(height, dtype=means3d.dtype), torch.arange(width, dtype=means3d.dtype),
                            indexing="ij")
    xs, ys = xs.reshape(-1), ys.reshape(-1)
    tx_pix, ty_pix = (xs // 16).long(), (ys // 16).long()
    P = xs.numel()
    D = colors.shape[1]
    T = torch.ones(P, dtype=means3d.dtype)
    done = torch.zeros(P, dtype=torch.bool)
    acc = torch.zeros(P, D, dtype=means3d.dtype)
    acc_inv = torch.zeros(P, dtype=means3d.dtype)
    order = sorted((i for i in range(N) if radii[i] > 0), key=lambda i: float(z[i].detach()))
    for i in order:
        x0, x1, y0, y1 = rects[i]
        in_rect = (tx_pix >= x0) & (tx_pix < x1) & (ty_pix >= y0) & (ty_pix < y1)
        dx, dy = px[i] - xs, py[i] - ys
        A = conics[i]
        power = -0.5 * (A[0, 0] * dx * dx + A[1, 1] * dy * dy) - A[0, 1] * dx * dy
        o = opacities[i] * (scale_aa[i] if antialiasing else 1.0)
        alpha = torch.clamp(o * torch.exp(power), max=0.99)
        use = in_rect & ~done & (power <= 0) & (alpha >= 1.0 / 255.0)
        test_T = T * (1 - alpha)
        stop = use & (test_T < 1e-4)
        done = done | stop
        use = use & ~stop
        w = torch.where(use, alpha * T, torch.zeros_like(T))
        acc = acc + w[:, None] * colors[i]
        acc_inv = acc_inv + w / z[i]
        T = torch.where(use, test_T, T)
    color = acc + T[:, None] * bg
    return (color.T.reshape(D, height, width), torch.tensor(radii),
            acc_inv.reshape(1, height, width))


def sh_colors(shs, means3d, campos, degree):
    """``[N, 3]`` colours max(SH + 0.5, 0) seen from campos."""
    return torch.clamp(_spherical_harmonics(degree, means3d - campos, shs) + 0.5, min=0.0)
