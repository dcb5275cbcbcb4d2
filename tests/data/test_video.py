import numpy as np
import pytest

from moegs.utils.png import read_png
from moegs.utils.video import read_video, write_apng, write_video


def _frames(T=4, H=18, W=22):
    t = np.linspace(0, 1, T)[:, None, None, None]
    return np.broadcast_to(np.array([0.2, 0.5, 0.8]) * (0.5 + 0.5 * t), (T, H, W, 3)).copy()


def test_mp4_roundtrip(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    fr = _frames(H=17)  # odd height is padded for the encoder
    p = write_video(fr, str(tmp_path / "v.mp4"), fps=4)
    back = read_video(p)
    assert back.shape == (4, 18, 22, 3)
    np.testing.assert_allclose(back[:, :17].mean((1, 2)), fr.mean((1, 2)), atol=0.03)
    sub = read_video(p, indices=[1, 3])
    assert sub.shape[0] == 2


def test_apng_first_frame_is_plain_png(tmp_path):
    fr = _frames()
    p = write_apng(str(tmp_path / "a.png"), fr)
    img = read_png(p)  # non-animated readers show the first frame
    np.testing.assert_array_equal(img, (fr[0] * 255 + 0.5).astype(np.uint8))
    assert open(p, "rb").read().count(b"fdAT") == 3


def test_bad_video_input(tmp_path):
    with pytest.raises(ValueError):
        write_video(np.zeros((4, 4, 3)), str(tmp_path / "x.mp4"))
    with pytest.raises(FileNotFoundError):
        read_video(str(tmp_path / "missing.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    with pytest.raises(ValueError):
        read_video(str(tmp_path / "junk.mp4"))
