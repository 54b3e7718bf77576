"""vidops.nn.MotionBandPass, BusyQuietSplit and BandPassLateral (operators.md §1.5)."""
import torch
import torch.nn.functional as F

import vidops
from vidops.nn import BandPassLateral, BusyQuietSplit, MotionBandPass
from vidops.reference.motion_band_pass import motion_band_pass as ref_mbp


def reference_state_dict(C, k, sigma):
    """A state_dict in busy-quiet-net's format: LoG.weight (C,1,k,k) and LO.weight (C,1,3),
    trained away from their initialisation (per-channel values differ)."""
    return {"conv_s.weight": vidops.log_kernel(sigma, k).expand(C, 1, k, k) + torch.randn(C, 1, k, k),
            "conv_t.weight": torch.randn(C, 1, 3)}


def authors_formula_2d(x2d, sw, tw, T, stride, temporal_padding):
    """busy-quiet-net's MotionBandPassFilter on the (N*T, C, H, W) layout, from reference-code.md 1.4."""
    NT, C, H, W = x2d.shape
    k = sw.shape[-1]
    s = F.conv2d(F.pad(x2d, [(k - 1) // 2] * 4, mode="reflect"), sw, groups=C)
    seq = s.view(NT // T, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(-1, C, T)
    if temporal_padding == "replicate":
        seq = torch.cat([seq[..., :1], seq, seq[..., -1:]], -1)
    out = F.conv1d(seq, tw, stride=stride, groups=C)
    To = out.shape[-1]
    return out.view(NT // T, H, W, C, To).permute(0, 4, 3, 1, 2).reshape(-1, C, H, W)


def test_motion_band_pass_module_loads_reference_checkpoint_and_matches():
    m = MotionBandPass(4, sigma=0.9, kernel_size=7, num_segments=6)
    assert set(m.state_dict()) == {"conv_s.weight", "conv_t.weight"}
    sd = reference_state_dict(4, 7, 0.9)
    m.load_state_dict(sd)
    x2d = torch.randn(2 * 6, 4, 12, 11)
    out = m(x2d)
    expected = authors_formula_2d(x2d, sd["conv_s.weight"], sd["conv_t.weight"], 6, 1, "replicate")
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-3 * expected.abs().max().item() * 1e-2)
    # The 5-D layout gives the same numbers.
    x5 = x2d.view(2, 6, 4, 12, 11).transpose(1, 2)
    torch.testing.assert_close(m(x5).transpose(1, 2).reshape(12, 4, 12, 11), out)


def test_stem_module_defaults_and_gradients():
    m = MotionBandPass(3, temporal_stride=3)
    assert m.temporal_padding == "valid" and m.conv_s.weight.shape == (3, 1, 9, 9)
    torch.testing.assert_close(m.conv_s.weight[1, 0], vidops.log_kernel(1.1, 9))
    x = torch.randn(1, 3, 9, 16, 16)
    out = m(x)
    assert out.shape == (1, 3, 3, 16, 16)
    out.square().mean().backward()
    assert m.conv_s.weight.grad.abs().sum() > 0 and m.conv_t.weight.grad.abs().sum() > 0


def test_busy_quiet_split_tsn_layout_matches_functional():
    m = BusyQuietSplit(quiet="first", quiet_scale=0.625, num_segments=2)
    x_tsn = torch.randn(2 * 2, 9, 16, 16)  # (N*S, 3 frames x 3 channels, H, W), frame-major
    busy, quiet = m(x_tsn)
    clip = x_tsn.view(2, 2, 3, 3, 16, 16).permute(0, 3, 1, 2, 4, 5).reshape(2, 3, 6, 16, 16)
    b5, q5 = vidops.busy_quiet(clip, m.conv_s.weight, m.conv_t.weight, "first", 0.625)
    torch.testing.assert_close(busy, b5.transpose(1, 2).reshape(4, 3, 16, 16))
    torch.testing.assert_close(quiet, q5.transpose(1, 2).reshape(4, 3, 10, 10))
    # Quiet "first" is the first frame of each triplet: channels 0..2 of the TSN layout.
    torch.testing.assert_close(quiet, F.interpolate(x_tsn[:, :3], scale_factor=0.625, mode="bilinear"))


def test_band_pass_lateral_is_exact_identity_at_init():
    lat = BandPassLateral(8, kernel_size=7, num_segments=4)
    keys = set(lat.state_dict())
    for k in ["mbpf.conv_s.weight", "mbpf.conv_t.weight", "d_up.0.weight", "d_up.1.weight", "d_up.1.running_mean",
              "d_down.0.weight", "d_down.1.bias", "d_down.1.num_batches_tracked"]:
        assert k in keys
    q, b = torch.randn(8, 8, 10, 9), torch.randn(8, 8, 10, 9)
    for mode in (True, False):
        lat.train(mode)
        q2, b2 = lat(q, b)
        assert torch.equal(q2, q) and torch.equal(b2, b)
        q5, b5 = q.view(2, 4, 8, 10, 9).transpose(1, 2), b.view(2, 4, 8, 10, 9).transpose(1, 2)
        q52, b52 = lat(q5, b5)
        assert torch.equal(q52, q5) and torch.equal(b52, b5)


def test_band_pass_lateral_matches_formula_with_nonzero_gamma():
    torch.manual_seed(1)
    lat = BandPassLateral(4, kernel_size=3, num_segments=3).eval()
    for bn in (lat.d_up[1], lat.d_down[1]):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    q, b = torch.randn(6, 4, 8, 7), torch.randn(6, 4, 8, 7)
    q2, b2 = lat(q, b)
    band = authors_formula_2d(q, lat.mbpf.conv_s.weight, lat.mbpf.conv_t.weight, 3, 1, "replicate")
    torch.testing.assert_close(q2, q + lat.d_down(b))
    torch.testing.assert_close(b2, b + lat.d_up(band), rtol=1e-4, atol=1e-4)
    # 5-D layout, eval mode: the same numbers.
    q5, b5 = (t.view(2, 3, 4, 8, 7).transpose(1, 2) for t in (q, b))
    q52, b52 = lat(q5, b5)
    torch.testing.assert_close(q52.transpose(1, 2).reshape(6, 4, 8, 7), q2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b52.transpose(1, 2).reshape(6, 4, 8, 7), b2, rtol=1e-4, atol=1e-4)
    # Training mode: gradients reach the lateral band-pass weights once gamma != 0.
    lat.train()
    q2, b2 = lat(q, b)
    (q2.sum() + b2.square().sum()).backward()
    assert lat.mbpf.conv_s.weight.grad.abs().sum() > 0


def test_module_runs_under_compile():
    torch._dynamo.reset()
    m = MotionBandPass(3, kernel_size=5, num_segments=4)
    x = torch.randn(8, 3, 12, 12)
    torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="aot_eager")(x), m(x))


def test_reference_formula_matches_module_on_5d():
    m = MotionBandPass(2, kernel_size=3)
    x = torch.randn(1, 2, 5, 6, 7)
    torch.testing.assert_close(m(x), ref_mbp(x, m.conv_s.weight.detach(), m.conv_t.weight.detach(), 1, "reflect", "replicate"))
