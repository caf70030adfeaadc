"""The compressed domain of the ``video`` track: MPEG-4 Part 2 encoding and CoViAR's representations.

Everything runs in-process with PyAV (``av``, which bundles FFmpeg); no system FFmpeg and no C
extension.

* ``encode`` writes frames as a raw MPEG-4 Part 2 elementary stream (``m4v``, as CoViAR's
  ``-c:v mpeg4 -f rawvideo``): GOP ``gop`` (12), no B-frames, a fixed quantizer
  (``qmin = qmax = q``; PyAV ignores ``qscale``), one thread, so the bytes are deterministic.
* ``decode`` decodes with ``flags2=+export_mvs`` and returns the RGB frames, the picture types
  and each P-frame's motion vectors (FFmpeg's ``AVMotionVector`` records: ``w h src_x src_y
  dst_x dst_y ...``; I-frames carry none).
* ``representations`` recomputes CoViAR's motion-vector and residual representations from the
  decoded frames and vectors, exactly as ``create_and_load_mv_residual`` of CoViAR's C loader
  (chaoyuaw/pytorch-coviar, ``data_loader/coviar_data_loader.c``) does, vectorised in numpy:

  - a source map ``src[p]`` (per pixel, the I-frame position its content came from) starts as the
    identity at each I-frame; for each P-frame, every vector with ``dst != src`` copies, for each
    pixel ``d`` of its ``w x h`` block around ``(dst_x, dst_y)`` whose source
    ``s = d + (src - dst)`` is inside the frame, ``new[d] = src_old[s]``; other pixels keep
    their map (CoViAR's ``accu_src``/``accu_src_old``);
  - accumulated MV: ``mv_t[p] = p - src[p]`` (x, y), int32;
  - accumulated residual: ``res_t[p] = frame_t[p] - iframe[src[p]]``, int32 (the reference
    gathered at the integer source, no sub-pixel interpolation);
  - ``accumulate=False``: ``mv_t = dst - src`` on the block's pixels (0 elsewhere) and
    ``res_t[p] = frame_t[p] - frame_{t-1}[p - mv_t[p]]``.

  CoViAR keeps frames in BGR order; here they stay RGB (channel order is the only difference).

Reference: C.-Y. Wu et al., "Compressed Video Action Recognition", CVPR 2018 (CoViAR).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

#: CoViAR's GOP size (ffmpeg's default for mpeg4)
GOP_SIZE = 12
PICT_I, PICT_P = 1, 2


class VideoError(Exception):
    """A clip that cannot be encoded or decoded (one-line message naming the problem)."""


def _av():
    try:
        import av  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - av is a core dependency
        raise VideoError("PyAV is not installed; pip install av (it bundles FFmpeg)") from exc
    return av


def encode(frames: np.ndarray, *, q: int = 4, gop: int = GOP_SIZE, fps: int = 25, container: str = "m4v") -> bytes:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB with MPEG-4 Part 2 (GOP ``gop``, no B-frames,
    ``qmin = qmax = q``); ``container`` ``m4v`` (raw stream, CoViAR), ``avi`` or ``mp4``.
    H and W must be even."""
    av = _av()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise VideoError(f"frames must be non-empty with even height and width, got {frames.shape}")
    if not 1 <= int(q) <= 31:
        raise VideoError(f"quantizer q must be in 1..31, got {q}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        st = out.add_stream("mpeg4", rate=int(fps))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        cc = st.codec_context
        cc.gop_size, cc.max_b_frames = int(gop), 0
        cc.qmin = cc.qmax = int(q)
        cc.thread_count = 1
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return buf.getvalue()


@dataclass
class Decoded:
    """A decoded clip: ``frames`` (T, H, W, 3) uint8 RGB, ``pict_types`` (T,) (1 = I, 2 = P),
    ``mvs[t]`` the motion-vector records of frame t (None for an I-frame)."""

    frames: np.ndarray
    pict_types: np.ndarray
    mvs: list


def decode(data: bytes | str, *, container: str | None = "m4v", max_frames: int | None = None, size: tuple[int, int] | None = None) -> Decoded:
    """Decode a clip (bytes of ``container``, or a file path with ``container=None``) with
    motion-vector export. ``size`` (W, H) rescales the RGB frames (only for reading a source
    clip before re-encoding; the vectors then refer to the original size)."""
    av = _av()
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
    frames, types, mvs = [], [], []
    try:
        with av.open(src, mode="r", format=container) as inp:
            if not inp.streams.video:
                raise VideoError(f"{data if isinstance(data, str) else 'clip'}: no video stream")
            st = inp.streams.video[0]
            st.codec_context.options = {"flags2": "+export_mvs"}
            st.thread_count = 1
            for fr in inp.decode(st):
                if size is not None:
                    frames.append(fr.to_ndarray(format="rgb24", width=int(size[0]), height=int(size[1])))
                else:
                    frames.append(fr.to_ndarray(format="rgb24"))
                types.append(int(fr.pict_type))
                sd = fr.side_data.get("MOTION_VECTORS")
                mvs.append(None if sd is None else np.array(sd.to_ndarray()))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except VideoError:
        raise
    except Exception as exc:  # av.error.* (invalid data, missing file)
        name = data if isinstance(data, str) else "clip bytes"
        raise VideoError(f"cannot decode {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not frames:
        raise VideoError(f"{data if isinstance(data, str) else 'clip'}: no frames decoded")
    return Decoded(np.stack(frames), np.asarray(types, dtype=np.int64), mvs)


def _block_pixels(mv: np.ndarray, h: int, w: int) -> tuple[np.ndarray, ...]:
    """For motion records ``mv`` with dst != src: (dst_y, dst_x, src_y, src_x, val_x, val_y) of
    every in-frame pixel of their blocks, in record order (later records overwrite earlier ones,
    as in the C loop)."""
    moving = (mv["dst_x"] != mv["src_x"]) | (mv["dst_y"] != mv["src_y"])
    mv = mv[moving]
    out: list[list[np.ndarray]] = [[] for _ in range(6)]
    if len(mv) == 0:
        return tuple(np.zeros(0, np.int64) for _ in range(6))
    # group by block size (16x16 usually; 8x8 with 4MV), keep the record order inside each group
    bw, bh = mv["w"].astype(np.int64), mv["h"].astype(np.int64)
    order = []
    for sw, sh in sorted(set(zip(bw.tolist(), bh.tolist()))):
        idx = np.flatnonzero((bw == sw) & (bh == sh))
        xs = np.arange(-(sw // 2), sw // 2)
        ys = np.arange(-(sh // 2), sh // 2)
        oy, ox = np.meshgrid(ys, xs, indexing="ij")  # (sh, sw)
        r = mv[idx]
        dx = r["dst_x"].astype(np.int64)[:, None, None] + ox
        dy = r["dst_y"].astype(np.int64)[:, None, None] + oy
        sx = r["src_x"].astype(np.int64)[:, None, None] + ox
        sy = r["src_y"].astype(np.int64)[:, None, None] + oy
        vx = np.broadcast_to((r["dst_x"].astype(np.int64) - r["src_x"])[:, None, None], dx.shape)
        vy = np.broadcast_to((r["dst_y"].astype(np.int64) - r["src_y"])[:, None, None], dx.shape)
        rec = np.broadcast_to(idx[:, None, None], dx.shape)
        ok = (dy >= 0) & (dy < h) & (dx >= 0) & (dx < w) & (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        for lst, arr in zip(out, (dy, dx, sy, sx, vx, vy)):
            lst.append(arr[ok])
        order.append(rec[ok])
    cat = [np.concatenate(lst) for lst in out]
    o = np.argsort(np.concatenate(order), kind="stable")
    return tuple(a[o] for a in cat)


def representations(dec: Decoded, *, accumulate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CoViAR's motion-vector and residual representations of every frame of ``dec``:
    ``mv`` (T, H, W, 2) int32 (x, y) and ``res`` (T, H, W, 3) int32 (RGB). I-frames get zeros.
    See the module docstring for the exact definitions."""
    frames = dec.frames.astype(np.int32)
    t_n, h, w, _ = frames.shape
    mv_out = np.zeros((t_n, h, w, 2), np.int32)
    res_out = np.zeros((t_n, h, w, 3), np.int32)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ident = np.stack([xx, yy], axis=-1).astype(np.int32)  # (H, W, 2): (x, y)
    src = ident.copy()
    iframe = frames[0]
    for t in range(t_n):
        if dec.pict_types[t] == PICT_I or t == 0:
            src = ident.copy()
            iframe = frames[t]
            continue
        recs = dec.mvs[t]
        if accumulate:
            new = src.copy()
            if recs is not None and len(recs):
                dy, dx, sy, sx, _, _ = _block_pixels(recs, h, w)
                new[dy, dx] = src[sy, sx]
            src = new
            mv_out[t] = ident - src
            res_out[t] = frames[t] - iframe[src[..., 1], src[..., 0]]
        else:
            mv = np.zeros((h, w, 2), np.int32)
            if recs is not None and len(recs):
                dy, dx, _, _, vx, vy = _block_pixels(recs, h, w)
                mv[dy, dx, 0] = vx
                mv[dy, dx, 1] = vy
            mv_out[t] = mv
            ref = ident - mv
            res_out[t] = frames[t] - frames[t - 1][ref[..., 1], ref[..., 0]]
    return mv_out, res_out


def representations_reference(dec: Decoded, *, accumulate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A direct, loop-by-loop Python port of CoViAR's C ``create_and_load_mv_residual`` (slow;
    the parity test compares ``representations`` against it)."""
    frames = dec.frames.astype(np.int32)
    t_n, h, w, _ = frames.shape
    mv_out = np.zeros((t_n, h, w, 2), np.int32)
    res_out = np.zeros((t_n, h, w, 3), np.int32)
    accu_src = np.zeros((w, h, 2), np.int64)  # indexed [x, y, c] as in the C code
    accu_old = np.zeros((w, h, 2), np.int64)
    ref_frame = frames[0]
    for t in range(t_n):
        if dec.pict_types[t] == PICT_I or t == 0:
            for x in range(w):
                for y in range(h):
                    accu_src[x, y] = (x, y)
                    accu_old[x, y] = (x, y)
            ref_frame = frames[t]
            continue
        if not accumulate:
            ref_frame = frames[t - 1]
        mv = np.zeros((h, w, 2), np.int64)
        for rec in dec.mvs[t] if dec.mvs[t] is not None else []:
            if rec["dst_x"] - rec["src_x"] == 0 and rec["dst_y"] - rec["src_y"] == 0:
                continue
            val_x, val_y = int(rec["dst_x"]) - int(rec["src_x"]), int(rec["dst_y"]) - int(rec["src_y"])
            for xs in range(-(int(rec["w"]) // 2), int(rec["w"]) // 2):
                for ys in range(-(int(rec["h"]) // 2), int(rec["h"]) // 2):
                    pdx, pdy = int(rec["dst_x"]) + xs, int(rec["dst_y"]) + ys
                    psx, psy = int(rec["src_x"]) + xs, int(rec["src_y"]) + ys
                    if 0 <= pdy < h and 0 <= pdx < w and 0 <= psy < h and 0 <= psx < w:
                        if accumulate:
                            accu_src[pdx, pdy] = accu_old[psx, psy]
                        else:
                            mv[pdy, pdx] = (val_x, val_y)
        if accumulate:
            accu_old[:] = accu_src
            for y in range(h):
                for x in range(w):
                    mv[y, x] = (x - accu_src[x, y, 0], y - accu_src[x, y, 1])
        for y in range(h):
            for x in range(w):
                if accumulate:
                    sx, sy = accu_src[x, y]
                else:
                    sx, sy = x - mv[y, x, 0], y - mv[y, x, 1]
                res_out[t, y, x] = frames[t, y, x] - ref_frame[sy, sx]
        mv_out[t] = mv
    return mv_out, res_out
