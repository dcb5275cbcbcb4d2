import math

import pytest
import torch
from gsplat.cuda._torch_impl import _isect_offset_encode, _isect_tiles

from moegs.ops import _reference as ref
from moegs.ops.isect import isect_offset_encode, isect_tiles


def _grid(width, height, tile_size):
    return math.ceil(width / tile_size), math.ceil(height / tile_size)


def _scene(n_images, n, width, height, dtype=torch.float32, max_radius=40):
    """Dense [I, N] entries: means spread past every image border, some culled."""
    lo = torch.tensor([-0.2 * width, -0.2 * height], dtype=dtype)
    span = torch.tensor([1.4 * width, 1.4 * height], dtype=dtype)
    means2d = lo + torch.rand(n_images, n, 2, dtype=dtype) * span
    radii = torch.randint(1, max_radius, (n_images, n, 2), dtype=torch.int32)
    culled = torch.rand(n_images, n) < 0.2
    radii[culled] = 0
    radii[torch.rand(n_images, n) < 0.05, 1] = 0  # one axis culled is culled too
    depths = (0.05 + torch.rand(n_images, n, dtype=dtype) * 20).to(dtype)
    return means2d, radii, depths


def _assert_matches_gsplat(means2d, radii, depths, tile_size, tw, th):
    n_images = math.prod(means2d.shape[:-2])
    got = isect_tiles(means2d, radii, depths, tile_size, tw, th)
    want = _isect_tiles(means2d, radii, depths, tile_size, tw, th)
    for name, g, w in zip(("tiles_per_gauss", "isect_ids", "flatten_ids"), got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        assert torch.equal(g, w), name
    offsets = isect_offset_encode(got[1], n_images, tw, th)
    want_offsets = _isect_offset_encode(want[1], n_images, tw, th)
    assert offsets.dtype == torch.int32 and offsets.shape == (n_images, th, tw)
    assert torch.equal(offsets, want_offsets)
    return got, offsets


@pytest.mark.parametrize("tile_size", [8, 16])
@pytest.mark.parametrize("n_images,width,height", [(1, 64, 48), (3, 77, 50), (2, 100, 31)])
def test_matches_gsplat(tile_size, n_images, width, height):
    tw, th = _grid(width, height, tile_size)
    means2d, radii, depths = _scene(n_images, 120, width, height, max_radius=15)
    radii[0][means2d[0, :, 0] > 0.3 * width] = 0  # leaves the right of image 0 empty
    (tpg, isect_ids, _), offsets = _assert_matches_gsplat(means2d, radii, depths, tile_size, tw, th)
    # The scene really has what the test claims: culled, clipped and empty tiles.
    assert (tpg == 0).any() and isect_ids.numel() > 20
    flat = offsets.flatten()
    assert (flat[1:] == flat[:-1]).any()


def test_matches_gsplat_float64_and_extra_batch_dims():
    tw, th = _grid(50, 40, 16)
    means2d, radii, depths = _scene(6, 30, 50, 40, dtype=torch.float64)
    shape = (2, 3, 30)
    _assert_matches_gsplat(
        means2d.reshape(*shape, 2), radii.reshape(*shape, 2), depths.reshape(shape), 16, tw, th
    )


def test_sparse_grid_path_matches_gsplat():
    # Many more (image, tile) buckets than intersections: the global-sort path.
    tw, th = _grid(8000, 8000, 8)
    means2d, radii, depths = _scene(4, 20, 8000, 8000)
    got, _ = _assert_matches_gsplat(means2d, radii, depths, 8, tw, th)
    assert 4 * tw * th > 4 * got[1].numel() + (1 << 20)


@pytest.mark.parametrize("n", [0, 5])
def test_empty_scene(n):
    tw, th = _grid(40, 40, 16)
    means2d, radii, depths = _scene(2, n, 40, 40)
    radii.zero_()
    (tpg, isect_ids, flatten_ids), offsets = _assert_matches_gsplat(means2d, radii, depths, 16, tw, th)
    assert tpg.shape == (2, n) and isect_ids.numel() == 0 and flatten_ids.numel() == 0
    assert torch.all(offsets == 0)


def test_matches_twin():
    tw, th = _grid(200, 150, 16)
    means2d, radii, depths = _scene(3, 2000, 200, 150)
    got = isect_tiles(means2d, radii, depths, 16, tw, th)
    want = ref.isect_tiles(means2d, radii, depths, 16, tw, th)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert torch.equal(isect_offset_encode(got[1], 3, tw, th), ref.isect_offset_encode(want[1], 3, tw, th))


def test_ties_are_ordered_by_flatten_id():
    tw, th = _grid(64, 64, 16)
    means2d, radii, depths = _scene(2, 300, 64, 64)
    depths = torch.where(torch.rand_like(depths) < 0.5, 1.0, 2.0)  # many equal keys
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, 16, tw, th)
    _, ref_ids, ref_flatten = ref.isect_tiles(means2d, radii, depths, 16, tw, th)
    assert torch.equal(isect_ids, ref_ids) and torch.equal(flatten_ids, ref_flatten)
    same_key = isect_ids[1:] == isect_ids[:-1]
    assert same_key.sum() > 100
    assert torch.all(flatten_ids[1:][same_key] > flatten_ids[:-1][same_key])


@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_packed_equals_dense(ids_dtype):
    n_images, n = 3, 400
    tw, th = _grid(90, 70, 16)
    means2d, radii, depths = _scene(n_images, n, 90, 70)
    dense = isect_tiles(means2d, radii, depths, 16, tw, th)

    visible = (radii > 0).all(-1).flatten().nonzero().squeeze(1)
    dense_index = visible[torch.randperm(visible.numel())]  # packed order need not follow images
    image_ids = (dense_index // n).to(ids_dtype)
    tpg, isect_ids, flatten_ids = isect_tiles(
        means2d.reshape(-1, 2)[dense_index], radii.reshape(-1, 2)[dense_index],
        depths.reshape(-1)[dense_index], 16, tw, th, image_ids=image_ids, n_images=n_images,
    )
    assert torch.equal(tpg, dense[0].flatten()[dense_index])
    assert torch.equal(isect_ids, dense[1])
    assert torch.equal(dense_index[flatten_ids.long()].int(), dense[2])


@pytest.mark.parametrize("width,height,n,sparse", [(300, 200, 20000, False), (8000, 8000, 2000, True)])
def test_bitwise_same_with_one_and_two_threads(width, height, n, sparse):
    n_images, tile_size = 4, 8
    tw, th = _grid(width, height, tile_size)
    means2d, radii, depths = _scene(n_images, n, width, height)
    depths = depths.round()  # ties, so the tie order is checked too
    saved = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            tpg, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tw, th)
            outs.append((tpg, isect_ids, flatten_ids, isect_offset_encode(isect_ids, n_images, tw, th)))
    finally:
        torch.set_num_threads(saved)
    n_isects = outs[0][1].numel()
    assert n_isects > 10000
    assert sparse == (n_images * tw * th > 4 * n_isects + (1 << 20))  # which sort path ran
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_non_finite_means_match_twin():
    tw, th = _grid(64, 64, 16)
    means2d, radii, depths = _scene(1, 50, 64, 64)
    means2d[0, :4] = torch.tensor([[float("nan"), 10.0], [float("inf"), 10.0],
                                   [-float("inf"), 10.0], [10.0, float("nan")]])
    radii[0, :4] = 5
    got = isect_tiles(means2d, radii, depths, 16, tw, th)
    want = ref.isect_tiles(means2d, radii, depths, 16, tw, th)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert torch.all(got[0][0, :4] == 0)


def test_non_contiguous_inputs():
    tw, th = _grid(64, 64, 16)
    means2d, radii, depths = _scene(2, 50, 64, 64)
    means_t = means2d.transpose(0, 1).contiguous().transpose(0, 1)
    assert not means_t.is_contiguous()
    for g, w in zip(isect_tiles(means_t, radii, depths, 16, tw, th),
                    isect_tiles(means2d, radii, depths, 16, tw, th)):
        assert torch.equal(g, w)


def test_key_overflow_guard():
    means2d, radii, depths = _scene(1, 4, 64, 64)
    ids = torch.zeros(4, dtype=torch.int32)
    # 1024 images (11 bits) x 1024 x 1024 tiles (21 bits) > 31 bits
    with pytest.raises(ValueError, match="key bits"):
        isect_tiles(means2d[0], radii[0], depths[0], 16, 1024, 1024, image_ids=ids, n_images=1024)
    with pytest.raises(ValueError, match="key bits"):
        isect_offset_encode(torch.zeros(0, dtype=torch.int64), 1024, 1024, 1024)
    with pytest.raises(RuntimeError, match="too many images or tiles"):
        torch.ops.moegs.isect_tiles(means2d[0], radii[0], depths[0], ids, 1024, 16, 1024, 1024)
    with pytest.raises(RuntimeError, match="too many images or tiles"):
        torch.ops.moegs.isect_offset_encode(torch.zeros(0, dtype=torch.int64), 1024, 1024, 1024)


def test_offset_encode_rejects_bad_keys():
    tw, th = _grid(64, 64, 16)
    means2d, radii, depths = _scene(2, 50, 64, 64)
    _, isect_ids, _ = isect_tiles(means2d, radii, depths, 16, tw, th)
    with pytest.raises(RuntimeError, match="out of range or out of order"):
        torch.ops.moegs.isect_offset_encode(isect_ids.flip(0), 2, tw, th)
    with pytest.raises(RuntimeError, match="out of range or out of order"):
        torch.ops.moegs.isect_offset_encode(isect_ids, 1, tw, th)  # keys of image 1


def test_bad_inputs():
    tw, th = _grid(64, 64, 16)
    means2d, radii, depths = _scene(2, 10, 64, 64)
    with pytest.raises(TypeError, match="radii"):
        isect_tiles(means2d, radii.float(), depths, 16, tw, th)
    with pytest.raises(TypeError, match="dtype"):
        isect_tiles(means2d, radii, depths.double(), 16, tw, th)
    with pytest.raises(ValueError, match="radii"):
        isect_tiles(means2d, radii[:, :5], depths, 16, tw, th)
    with pytest.raises(ValueError, match="tile_size"):
        isect_tiles(means2d, radii, depths, 0, tw, th)
    with pytest.raises(ValueError, match="tile_width"):
        isect_tiles(means2d, radii, depths, 16, 0, th)
    with pytest.raises(ValueError, match="n_images"):
        isect_tiles(means2d, radii, depths, 16, tw, th, n_images=3)
    flat = (means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1))
    ids = torch.zeros(20, dtype=torch.int64)
    with pytest.raises(ValueError, match="needs n_images"):
        isect_tiles(*flat, 16, tw, th, image_ids=ids)
    with pytest.raises(ValueError, match="image_ids"):
        isect_tiles(*flat, 16, tw, th, image_ids=ids + 2, n_images=2)
    with pytest.raises(RuntimeError, match="image_ids must lie in"):
        torch.ops.moegs.isect_tiles(*flat, ids.int() - 1, 2, 16, tw, th)
    with pytest.raises(ValueError, match="image_ids"):
        isect_tiles(*flat, 16, tw, th, image_ids=ids[:5], n_images=2)


def test_opcheck():
    tw, th = _grid(64, 48, 16)
    means2d, radii, depths = _scene(2, 30, 64, 48)
    ids = torch.arange(2, dtype=torch.int32).repeat_interleave(30)
    args = (means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1), ids, 2, 16, tw, th)
    torch.library.opcheck(torch.ops.moegs.isect_tiles, args)
    isect_ids = torch.ops.moegs.isect_tiles(*args)[1]
    torch.library.opcheck(torch.ops.moegs.isect_offset_encode, (isect_ids, 2, tw, th))
