"""vidops.models.count_flops: multiply-adds with the vidops ops counted, on the meta device."""
import pytest
import torch

import vidops
from vidops.models import count_flops


def test_tsm_resnet50_matches_the_thesis_table():
    # thesis Table 4.6: TSM ResNet-50, 8 frames of 224 x 224: 32.9 G multiply-adds
    r = count_flops(vidops.models.tsm_resnet50(400, num_segments=8), (1, 3, 8, 224, 224))
    assert 32.0e9 < r.macs < 33.5e9, r
    assert r.by_op.get("temporal_shift", 0) == 0


def test_vidops_ops_are_counted():
    r = count_flops(vidops.models.rnl_tsm_resnet50(400, num_segments=8), (1, 3, 8, 224, 224))
    # two res3 blocks (L = 6272, d = dv = 256) and three res4 blocks (L = 1568, d = dv = 512)
    want = 2 * 6272 ** 2 * 512 + 3 * 1568 ** 2 * 1024
    assert r.by_op["region_attention"] == want
    assert r.by_op["depthwise_conv3d"] > 0
    b = count_flops(vidops.models.bqn_resnet50(400, num_segments=2), (1, 3, 6, 64, 64))
    assert b.by_op["motion_band_pass"] > 0 or b.by_op.get("busy_quiet", 0) > 0


def test_counting_needs_no_memory_and_leaves_the_model_alone():
    m = vidops.models.tsm_resnet50(10, num_segments=2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count_flops(m, (1, 3, 2, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert next(m.parameters()).device.type == "cpu"


def test_bad_arguments():
    with pytest.raises(TypeError, match="vidops.models.count_flops: model"):
        count_flops(lambda x: x, (1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="clip_shape"):
        count_flops(torch.nn.Identity(), (1, 3, -8))
