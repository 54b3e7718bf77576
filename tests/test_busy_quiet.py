"""vidops.busy_quiet and the LoG initialisation (operators.md §1.2, 1.3)."""
import pytest
import torch
import torch.nn.functional as F

import vidops
from vidops.reference.busy_quiet import busy_quiet as ref_bq
from vidops.reference.motion_band_pass import motion_band_pass as ref_mbp

from conftest import device_backend_params
from tolerance import assert_close_to_reference

BACKENDS = device_backend_params("busy_quiet", interpreted_triton=False)  # triton: test_motion_band_pass_triton.py
CASES = [  # (N, C, S, H, W, quiet, quiet_scale)
    (2, 3, 2, 16, 19, "first", None),
    (1, 3, 3, 17, 16, "mean_minus_busy", None),
    (2, 3, 2, 16, 21, "first", 0.625),
    (1, 2, 1, 13, 18, "mean_minus_busy", 0.625),
    (1, 3, 2, 15, 15, "first", 0.5),
]


def case_id(c):
    return f"N{c[0]}-C{c[1]}-S{c[2]}-{c[3]}x{c[4]}-{c[5]}-{c[6]}"


def make(case, dtype=torch.float64, device="cpu"):
    N, C, S, H, W, quiet, scale = case
    clip = torch.randn(N, C, 3 * S, H, W, dtype=dtype, device=device)
    sw = vidops.log_kernel(1.1, 9, dtype).expand(C, 9, 9).to(device) + torch.randn(C, 9, 9, dtype=dtype, device=device)
    tw = torch.randn(C, 3, dtype=dtype, device=device)
    return clip, sw, tw, quiet, scale


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_forward_matches_reference(device, backend, dtype, case):
    clip, sw, tw, quiet, scale = make(case, dtype, device)
    busy, q = vidops.busy_quiet(clip, sw, tw, quiet, scale, backend=backend)
    b64, q64 = ref_bq(clip.double(), sw.double(), tw.double(), quiet, scale)
    bs, qs = ref_bq(clip, sw, tw, quiet, scale)
    b_abs = ref_mbp(clip.double().abs(), sw.double().abs(), tw.double().abs(), 3, "reflect", "valid")
    assert_close_to_reference(busy, b64, bs, b_abs, name="busy")
    q_abs = ref_bq(clip.double().abs(), sw.double().abs(), tw.double().abs(), quiet, scale)[1].abs()
    if quiet == "mean_minus_busy":
        q_abs = q_abs + (b_abs if scale is None else F.interpolate(
            b_abs.transpose(1, 2).flatten(0, 1), scale_factor=scale, mode="bilinear").reshape(q_abs.transpose(1, 2).shape).transpose(1, 2))
    assert_close_to_reference(q, q64, qs, q_abs, name="quiet")


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradients_match_reference(device, backend):
    for case in CASES[1:4]:
        clip, sw, tw, quiet, scale = make(case, torch.float64, device)
        ins = [t.clone().requires_grad_(True) for t in (clip, sw, tw)]
        busy, q = vidops.busy_quiet(*ins, quiet, scale, backend=backend)
        gb, gq = torch.randn_like(busy), torch.randn_like(q)
        torch.autograd.backward((busy, q), (gb, gq))
        refs = [t.clone().requires_grad_(True) for t in (clip, sw, tw)]
        rb, rq = ref_bq(*refs, quiet, scale)
        torch.autograd.backward((rb, rq), (gb, gq))
        for a, b in zip(ins, refs):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck(device, backend):
    clip, sw, tw, _, _ = make((1, 2, 2, 6, 7, "first", None), torch.float64, device)
    sw = sw[:, 3:6, 3:6].contiguous()
    ins = tuple(t.requires_grad_(True) for t in (clip, sw, tw))
    for quiet, scale in [("first", None), ("mean_minus_busy", 0.625)]:
        assert torch.autograd.gradcheck(lambda a, b, c: vidops.busy_quiet(a, b, c, quiet, scale, backend=backend), ins)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_layouts_batch_one_and_empty(device, backend):
    clip, sw, tw, quiet, scale = make((1, 3, 2, 16, 17, "mean_minus_busy", 0.625), torch.float32, device)
    a = vidops.busy_quiet(clip.to(memory_format=torch.channels_last_3d), sw, tw, quiet, scale, backend=backend)
    b = vidops.busy_quiet(clip, sw, tw, quiet, scale, backend=backend)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    busy, q = vidops.busy_quiet(clip[:0], sw, tw, quiet, scale, backend=backend)
    assert busy.shape == (0, 3, 2, 16, 17) and q.shape == (0, 3, 2, 10, 10)


def test_opcheck_and_compile():
    clip, sw, tw, _, _ = make((1, 2, 2, 10, 11, "first", None))
    for quiet, scale in [("first", None), ("mean_minus_busy", 0.625)]:
        args = (clip.requires_grad_(True), sw, tw, quiet, scale, None)
        torch.library.opcheck(torch.ops.vidops.busy_quiet.default, args)
    torch._dynamo.reset()
    f = torch.compile(lambda c: vidops.busy_quiet(c, sw, tw, "mean_minus_busy", 0.625), fullgraph=True, backend="aot_eager")
    for u, v in zip(f(clip), vidops.busy_quiet(clip, sw, tw, "mean_minus_busy", 0.625)):
        torch.testing.assert_close(u, v)


def test_quiet_first_is_the_first_frame_of_each_triplet():
    clip, sw, tw, _, _ = make((2, 3, 4, 12, 13, "first", None))
    _, q = vidops.busy_quiet(clip, sw, tw, "first")
    torch.testing.assert_close(q, clip[:, :, 0::3], rtol=0, atol=0)
    _, q = vidops.busy_quiet(clip, sw, tw, "first", 0.625)
    assert q.shape[-2:] == (7, 8)  # floor(12 * 0.625), floor(13 * 0.625)


def test_bad_inputs():
    clip, sw, tw, _, _ = make((1, 3, 2, 12, 13, "first", None))
    with pytest.raises(ValueError, match="busy_quiet.*multiple of 3"):
        vidops.busy_quiet(clip[:, :, :5], sw, tw)
    with pytest.raises(ValueError, match="busy_quiet.*quiet"):
        vidops.busy_quiet(clip, sw, tw, quiet="last")
    with pytest.raises(ValueError, match="busy_quiet.*quiet_scale"):
        vidops.busy_quiet(clip, sw, tw, quiet_scale=0.01)


# ---- the LoG initialisation (operators.md §1.2; values verified on the reference in reference-code.md) ----

def test_log_kernel_matches_the_reference_values():
    k = vidops.log_kernel(1.1, 9)
    assert k.dtype == torch.float32
    row = torch.tensor([-2.10, -18.36, -34.81, 108.06, 278.38, 108.06, -34.81, -18.36, -2.10])
    torch.testing.assert_close(k[4], row, atol=6e-3, rtol=0)
    assert abs(k.sum().item() - 0.99989) < 2e-4      # the float32 construction's sum, as verified
    assert abs(k.abs().sum().item() - 1589.4) < 0.5  # L1 norm
    k64 = vidops.log_kernel(1.1, 9, torch.float64)
    assert abs(k64.sum().item() - 1.0) < 1e-12
    assert (k - k64).abs().max() < 0.02              # fp32 vs fp64 construction differ by up to 0.0132
    k3 = vidops.log_kernel(0.9, 3)
    torch.testing.assert_close(k3[1, 1], torch.tensor(0.6440), atol=1e-4, rtol=0)
    torch.testing.assert_close(vidops.log_kernel(0.9, 7)[3, 3], torch.tensor(226.76), atol=0.01, rtol=0)


def test_log_kernel_refuses_bad_arguments():
    with pytest.raises(TypeError, match="log_kernel.*dtype"):
        vidops.log_kernel(1.1, 9, torch.float16)
    with pytest.raises(ValueError, match="log_kernel.*k"):
        vidops.log_kernel(1.1, 8)
    with pytest.raises(ValueError, match="log_kernel.*sigma"):
        vidops.log_kernel(-1.0, 9)
    torch.testing.assert_close(vidops.temporal_band_pass_init(), torch.tensor([-1.0, 2.0, -1.0]) / 3)
