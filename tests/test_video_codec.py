"""Known-answer tests of the video track's compressed domain (spec tracks-phase2.md §4.10, 1-4)."""

import numpy as np
import pytest

from coreset_bench.tracks.video import codec as V
def _texture(h, w, seed=0):
    from scipy import ndimage as nd

    rng = np.random.default_rng(seed)
    img = nd.uniform_filter(rng.integers(0, 256, (h, w, 3)).astype(np.float64), (9, 9, 1))
    return ((img - img.mean()) * 3 + 128).clip(0, 255).astype(np.uint8)


def _pan(k=2, t=24, h=64, w=64, seed=0):
    """Content translating right by k px per frame (a window sliding left over a texture)."""
    big = _texture(h, w + k * t + 8, seed)
    x0 = k * t
    return np.stack([big[:, x0 - k * i: x0 - k * i + w] for i in range(t)])


def _rec(dst_x, dst_y, src_x, src_y, w=4, h=4):
    dt = np.dtype([("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"), ("dst_x", "<i2"), ("dst_y", "<i2"),
                   ("flags", "<u8"), ("motion_x", "<i4"), ("motion_y", "<i4"), ("motion_scale", "<u2")], align=True)
    return np.array([(-1, w, h, src_x, src_y, dst_x, dst_y, 0, 0, 0, 1)], dtype=dt)


def test_gop_structure_and_side_data():
    dec = V.decode(V.encode(_pan(t=26)))
    assert dec.pict_types.tolist() == ([V.PICT_I] + [V.PICT_P] * 11) * 2 + [V.PICT_I, V.PICT_P]
    for t, kind in enumerate(dec.pict_types):
        assert (dec.mvs[t] is None) == (kind == V.PICT_I)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pan_yields_exact_motion_vectors_and_tiny_residuals(k):
    """A pan of k px/frame: every interior macroblock's vector is exactly (k, 0), the accumulated
    MV at P-frame t is (k t, 0), and for even k the accumulated residual is quantisation noise.
    (An odd shift is not a translation of the 4:2:0 chroma planes, so the colour conversion
    itself leaves a residual there; the vectors are still exact.)"""
    frames = _pan(k=k, t=12)
    dec = V.decode(V.encode(frames, q=2))
    mv_raw, _ = V.representations(dec, accumulate=False)
    mv_acc, res_acc = V.representations(dec, accumulate=True)
    for t in range(1, 12):
        recs = dec.mvs[t]
        interior = (recs["dst_x"] > 8) & (recs["dst_x"] < 56)
        assert ((recs["dst_x"] - recs["src_x"])[interior] == k).all() and ((recs["dst_y"] - recs["src_y"])[interior] == 0).all()
        assert (mv_raw[t, 16:48, 16:48, 0] == k).all() and (mv_raw[t, ..., 1] == 0).all()
        lo = k * t + 8  # pixels whose content was inside the I-frame
        assert (mv_acc[t, :, lo:, 0] == k * t).all(), t
        assert (mv_acc[t, ..., 1] == 0).all()
        if k % 2 == 0:
            assert np.abs(res_acc[t, 8:56, lo:56]).mean() < 1.5, t


def test_static_clip_has_zero_motion_and_near_zero_residual():
    frames = np.repeat(_texture(32, 32)[None], 12, axis=0)
    dec = V.decode(V.encode(frames, q=2))
    mv, res = V.representations(dec)
    assert (mv == 0).all()
    assert np.abs(res[1:]).mean() < 2.0


def test_encoding_is_deterministic():
    frames = _pan(t=12)
    assert V.encode(frames) == V.encode(frames.copy())
    a, b = V.decode(V.encode(frames)), V.decode(V.encode(frames))
    assert np.array_equal(a.frames, b.frames)
    assert all(np.array_equal(x, y) for x, y in zip(a.mvs[1:], b.mvs[1:]))


def test_accumulated_map_equals_hand_worked_two_frame_case():
    """8x8 frames, one 4x4 block per P-frame. Frame 1: block at dst (2..5, 2..5) from src shifted
    by (-1, 0). Frame 2: block at dst (4..7, 2..5) from src shifted by (-2, 0): its pixels take the
    *previous* map at their source, so pixel (x=4, y=3) -> source x 2 in frame 1 -> 1 in the I-frame."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    dec = V.Decoded(frames, np.array([V.PICT_I, V.PICT_P, V.PICT_P]), [None, _rec(4, 4, 3, 4), _rec(6, 4, 4, 4)])
    mv, res = V.representations(dec, accumulate=True)
    want1 = np.zeros((8, 8), int)
    want1[2:6, 2:6] = 1
    assert (mv[1, ..., 0] == want1).all() and (mv[1, ..., 1] == 0).all()
    # frame 2: x 4..7 of rows 2..5 take map[x - 2]: x=4 -> map(2)=1 -> mv 3; x=5 -> map(3)=2 -> 3;
    # x=6 -> map(4)=3 -> 3; x=7 -> map(5)=4 -> 3. Columns 2..3 keep frame 1's map (mv 1).
    want2 = np.zeros((8, 8), int)
    want2[2:6, 2:4] = 1
    want2[2:6, 4:8] = 3
    assert (mv[2, ..., 0] == want2).all()
    f = frames.astype(int)
    assert res[2, 3, 4].tolist() == (f[2, 3, 4] - f[0, 3, 1]).tolist()
    assert res[2, 0, 0].tolist() == (f[2, 0, 0] - f[0, 0, 0]).tolist()
    # non-accumulated: the block's own vector, the previous frame as reference
    mvn, resn = V.representations(dec, accumulate=False)
    assert (mvn[2, 2:6, 4:8, 0] == 2).all() and mvn[2, ..., 0].sum() == 2 * 16
    assert resn[2, 3, 4].tolist() == (f[2, 3, 4] - f[1, 3, 2]).tolist()


@pytest.mark.parametrize("accumulate", [True, False])
def test_vectorised_equals_direct_port_of_the_c_loop(accumulate):
    rng = np.random.default_rng(3)
    # a random walk of a textured patch on a panning textured background, 2 GOPs
    bg = _texture(40, 96, 1)
    obj = _texture(12, 12, 2)
    frames = []
    x, y = 10, 10
    for i in range(24):
        f = bg[4:36, 60 - 2 * i: 92 - 2 * i].copy()
        x, y = np.clip(x + rng.integers(-3, 4), 0, 20), np.clip(y + rng.integers(-3, 4), 0, 20)
        f[y:y + 12, x:x + 12] = obj
        frames.append(f)
    dec = V.decode(V.encode(np.stack(frames), q=4))
    assert sum(int(((m["dst_x"] != m["src_x"]) | (m["dst_y"] != m["src_y"])).sum()) for m in dec.mvs if m is not None) > 10
    a = V.representations(dec, accumulate=accumulate)
    b = V.representations_reference(dec, accumulate=accumulate)
    assert a[0].dtype == np.int32 and a[1].dtype == np.int32
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_bad_input_is_one_line_error():
    with pytest.raises(V.VideoError, match="uint8"):
        V.encode(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(V.VideoError, match="even"):
        V.encode(np.zeros((2, 7, 8, 3), np.uint8))
    with pytest.raises(V.VideoError, match="cannot decode"):
        V.decode(b"not a video at all" * 10)
