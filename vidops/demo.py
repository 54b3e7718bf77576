"""`python -m vidops.demo [VIDEO] [--out sheet.png]`: what the operators see, on one PNG sheet.

With a video file (decoded with PyAV, `pip install av`) it reads the first frames; with no argument
it synthesises a clip from a photograph that matplotlib ships (Grace Hopper's portrait): a slow
camera pan across the picture and a bright disc crossing it quickly. The sheet has one labelled
panel per row:

- input: frames of the clip;
- Busy and Quiet: `vidops.busy_quiet` with the Busy-Quiet Net stem (LoG sigma 1.1, k 9, temporal
  band-pass [-1, 2, -1]/3 with stride 3), Busy shown as its magnitude;
- PWTP: `vidops.pixelwise_temporal_projection` with a closed-form basis (D = 1, each pixel's own
  brightness profile over time, the mean of its channels): a static pixel is explained exactly, so
  the dynamic appearance (the mean residual) is zero there; what the brightness alone does not
  explain (the colour of a moving object over a different background) stays. Shown: dynamic
  appearance and the static part (the mean of the projection);
- TSP: `vidops.temporal_squeeze` with a tent basis (D = 3 squeezed images of the clip);
- attention: the attention map of a `vidops.nn.RegionNonLocal` block (3x7x7 region conv) for a
  query on the moving disc, over every frame: where the block looks for that point.

It prints where it wrote the sheet and how long each operator took.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

PANELS = ("input", "busy", "quiet", "dynamic appearance", "static part", "tsp", "attention")


# ---- clips -----------------------------------------------------------------------------------------

def photograph() -> torch.Tensor:
    """matplotlib's sample photograph as (3, H, W) float32 in [0, 1]."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mimage

    img = mimage.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    t = torch.from_numpy(img.copy()).float()
    if t.max() > 1.5:
        t = t / 255.0
    return t[..., :3].permute(2, 0, 1).contiguous()


def synthetic_clip(frames: int = 24, size: int = 112, pan: float = 0.25, speed: float = 4.0,
                   radius: float = 9.0, static: bool = False) -> tuple:
    """(clip (1, 3, frames, size, size), disc centres [(y, x)] per frame).

    The camera pans `pan` pixels per frame to the right across the photograph (bilinear, so the
    motion is sub-pixel smooth) and a white disc of `radius` crosses it at `speed` pixels per frame.
    static=True: no pan and no disc (every frame the same)."""
    photo = photograph()
    need_w = size + pan * frames + 2                      # the pan never leaves the photograph
    scale = max(size / photo.shape[1], need_w / photo.shape[2])
    H0, W0 = int(math.ceil(photo.shape[1] * scale)), int(math.ceil(photo.shape[2] * scale))
    base = F.interpolate(photo[None], size=(H0, W0), mode="bilinear", align_corners=False)[0]
    base = base[:, (H0 - size) // 2:(H0 - size) // 2 + size]
    H = size
    out, centres = [], []
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    for t in range(frames):
        shift = 0.0 if static else pan * t
        x0 = (W0 - size) / 2 - pan * frames / 2 + shift
        grid_x = (xs + x0) / (W0 - 1) * 2 - 1
        grid_y = ys / (H - 1) * 2 - 1
        grid = torch.stack([grid_x, grid_y], -1)[None]
        frame = F.grid_sample(base[None], grid, mode="bilinear", align_corners=True)[0]
        cy, cx = size * 0.55, size * 0.1 + speed * t
        if not static:
            disc = ((ys - cy) ** 2 + (xs - cx) ** 2 <= radius ** 2).float()
            frame = frame * (1 - disc) + disc
        out.append(frame)
        centres.append((cy, cx))
    return torch.stack(out, 1)[None], centres


def read_video(path: str, frames: int = 24, size: int = 112) -> torch.Tensor:
    try:
        import av
    except ImportError as exc:
        raise SystemExit("vidops.demo: reading a video file needs PyAV (`pip install av`); "
                         "run without a file for the synthetic clip") from exc
    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            out.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).float().permute(2, 0, 1) / 255.0)
            if len(out) == frames:
                break
    if len(out) < 3:
        raise SystemExit(f"vidops.demo: {path} has {len(out)} frames; at least 3 are needed")
    out = out[: len(out) - len(out) % 3]
    clip = torch.stack(out, 1)[None]
    h, w = clip.shape[-2:]
    side = min(h, w)
    clip = clip[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return F.interpolate(clip, size=(clip.shape[2], size, size), mode="trilinear", align_corners=False)


# ---- what the operators see ----------------------------------------------------------------------

def _timed(timings: dict, name: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[name] = 1e3 * (time.perf_counter() - t0)
    return out


def pwtp_basis(clip: torch.Tensor) -> torch.Tensor:
    """The closed-form demonstration basis (N, T*1, H, W): each pixel's brightness over time."""
    return clip.mean(1)


def attention_map(clip: torch.Tensor, query: tuple, size: int = 28) -> torch.Tensor:
    """The weights a_ij of a RegionNonLocal block (3x7x7) for one query j, (T, size, size).

    The block is set up so that its region features are the local colour: theta maps RGB to 8
    channels (the colour, scaled by 6), the region conv averages a 3x7x7 box."""
    import vidops

    x = F.interpolate(clip, size=(clip.shape[2], size, size), mode="trilinear", align_corners=False)
    block = vidops.nn.RegionNonLocal(6, kernel=(3, 7, 7)).eval()     # 3 region channels
    with torch.no_grad():
        block.theta.weight.zero_()
        block.theta.bias.zero_()
        for c in range(3):
            block.theta.weight[c, c] = 6.0
        block.penta.weight.fill_(1.0 / (3 * 7 * 7))
        p, _ = block.attention_input(torch.cat([x, torch.zeros_like(x)], 1))
    T = p.shape[2]
    pf = p.flatten(2)[0]                                             # (d, L)
    t, yq, xq = query
    j = (t * size + int(yq * size)) * size + int(xq * size)
    weights = torch.softmax(pf.T @ pf[:, j], dim=0)                  # over keys
    return weights.view(T, size, size)


def compute(clip: torch.Tensor) -> tuple:
    """{panel: tensor} and {operator: ms} for a clip (1, 3, T, H, W) with T a multiple of 3."""
    import vidops
    from vidops.nn.temporal_squeeze import tent_basis

    timings = {}
    sw = vidops.log_kernel(1.1, 9).expand(3, 9, 9)
    tw = vidops.temporal_band_pass_init().expand(3, 3)
    busy, quiet = _timed(timings, "busy_quiet", vidops.busy_quiet, clip, sw, tw, quiet="first")
    basis = pwtp_basis(clip)
    dyn, _ = _timed(timings, "pixelwise_temporal_projection", vidops.pixelwise_temporal_projection,
                    clip, basis, eps=1e-6)
    static = clip.mean(2) - dyn
    K = min(10, clip.shape[2])
    squeezed, _ = _timed(timings, "temporal_squeeze", vidops.temporal_squeeze,
                         clip[:, :, :K], tent_basis(K, 3).expand(1, K, 3).contiguous(), 1e-6)
    return {"input": clip, "busy": busy, "quiet": quiet, "dynamic appearance": dyn,
            "static part": static, "tsp": squeezed}, timings


# ---- the sheet ----------------------------------------------------------------------------------

def _show(img: torch.Tensor):
    """(3, H, W) or (H, W) -> an array for imshow."""
    img = img.detach().float()
    if img.dim() == 3:
        return img.clamp(0, 1).permute(1, 2, 0).numpy()
    return img.numpy()


def draw_sheet(panels: dict, attention: torch.Tensor, path: str, columns: int = 6) -> dict:
    """Writes the PNG; returns {"width", "height", "rows": [panel names]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clip = panels["input"][0]
    T = clip.shape[1]
    frame_ids = [round(i * (T - 1) / (columns - 1)) for i in range(columns)]
    seg_ids = [round(i * (panels["busy"].shape[2] - 1) / (columns - 1)) for i in range(columns)]
    rows = [
        ("input", [(_show(clip[:, t]), f"frame {t}") for t in frame_ids]),
        ("busy", [(_show(panels["busy"][0, :, s].abs().mean(0)), f"segment {s}") for s in seg_ids]),
        ("quiet", [(_show(panels["quiet"][0, :, s]), f"segment {s}") for s in seg_ids]),
        ("dynamic appearance", [(_show(0.5 + 2 * panels["dynamic appearance"][0]), "colour, 0.5 + 2 p"),
                                (_show(panels["dynamic appearance"][0].abs().mean(0)), "magnitude")]),
        ("static part", [(_show(panels["static part"][0]), "mean projection")]),
        ("tsp", [(_show((panels["tsp"][0, :, d] - panels["tsp"][0, :, d].min())
                        / (panels["tsp"][0, :, d].max() - panels["tsp"][0, :, d].min() + 1e-12)), f"squeezed {d}")
                 for d in range(panels["tsp"].shape[2])]),
        ("attention", [(_show(attention[t]), f"frame {t}") for t in
                       [round(i * (attention.shape[0] - 1) / (columns - 1)) for i in range(columns)]]),
    ]
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.0 * columns, 2.1 * len(rows)), dpi=100, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(images):
                img, title = images[c]
                ax.imshow(img, cmap=None if img.ndim == 3 else ("magma" if label != "attention" else "viridis"))
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    fig.suptitle("vidops: what the operators see", fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    w, h = fig.canvas.get_width_height()
    plt.close(fig)
    return {"width": w, "height": h, "rows": [r[0] for r in rows]}


def run(video=None, out=None, frames=24, size=112, static=False) -> dict:
    """Builds the sheet; returns the panels, timings and sheet facts (what the test checks)."""
    if video:
        clip, centres = read_video(video, frames, size), None
    else:
        clip, centres = synthetic_clip(frames, size, static=static)
    frames = clip.shape[2] - clip.shape[2] % 3
    clip = clip[:, :, :frames].contiguous()
    panels, timings = compute(clip)
    t_query = clip.shape[2] // 2
    if centres is not None:
        cy, cx = centres[t_query]
        query = (t_query, cy / size, cx / size)
    else:
        query = (t_query, 0.5, 0.5)
    t0 = time.perf_counter()
    attention = attention_map(clip, query)
    timings["region_attention (RegionNonLocal block)"] = 1e3 * (time.perf_counter() - t0)
    out = out or os.path.join(os.getcwd(), "vidops_demo.png")
    sheet = draw_sheet(panels, attention, out)
    return {"panels": panels, "attention": attention, "timings": timings, "sheet": sheet, "path": out,
            "centres": centres, "query": query}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidops.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", help="a video file (needs PyAV); default: a synthetic clip")
    ap.add_argument("--out", default=None, help="the PNG to write (default: ./vidops_demo.png)")
    ap.add_argument("--frames", type=int, default=24, help="frames to use (a multiple of 3; default 24)")
    ap.add_argument("--size", type=int, default=112, help="frame size in pixels (default 112)")
    args = ap.parse_args(argv)
    result = run(args.video, args.out, args.frames, args.size)
    s = result["sheet"]
    print(f"vidops.demo: wrote {result['path']} ({s['width']}x{s['height']} px, panels: {', '.join(s['rows'])})")
    for name, ms in result["timings"].items():
        print(f"  {name}: {ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
