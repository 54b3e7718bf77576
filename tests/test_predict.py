"""vidops.models.predict: TSN segment sampling for the TSM family, dense sampling for X3D-style
models (chosen from model attributes), 1 or 3 crops, softmax scores averaged over the views; a
video file written with PyAV."""
import importlib.util

import pytest
import torch
from torch import nn

import vidops.models as M
from vidops.models.predict import Sampling, frame_indices, sampling_of, views_of

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="needs PyAV (pip install av)")


def test_segment_sampling_takes_the_segment_centres_then_spreads_the_clips():
    s = Sampling("segment", 4, segments=4, frames_per_segment=1)
    assert frame_indices(40, s, 1) == [[5, 15, 25, 35]]
    assert frame_indices(40, s, 2) == [[2, 12, 22, 32], [7, 17, 27, 37]]
    triplets = Sampling("segment", 6, segments=2, frames_per_segment=3)   # BQN
    assert frame_indices(30, triplets, 1) == [[7, 8, 9, 22, 23, 24]]
    assert frame_indices(3, triplets, 1) == [[0, 1, 2, 2, 2, 2]]         # a short video repeats its last frame


def test_dense_sampling_spreads_strided_clips():
    s = Sampling("dense", 4, frame_stride=12)                          # X3D-XS: 4 x 12
    assert frame_indices(100, s, 1) == [[32, 44, 56, 68]]              # the middle: (100 - 37) / 2
    assert frame_indices(100, s, 3) == [[0, 12, 24, 36], [32, 44, 56, 68], [63, 75, 87, 99]]
    assert frame_indices(20, s, 1) == [[0, 12, 19, 19]]


def test_the_sampling_follows_the_models_attributes():
    assert sampling_of(M.tsm_resnet50(5, num_segments=8)) == Sampling("segment", 8, 8, 1, 1, 224, 256)
    bqn = sampling_of(M.bqn_resnet50(5, num_segments=4))
    assert (bqn.kind, bqn.frames, bqn.frames_per_segment) == ("segment", 12, 3)
    dan = sampling_of(M.dan_tsm_resnet50(5, num_segments=2, frames_per_segment=4))
    assert (dan.kind, dan.frames, dan.frames_per_segment) == ("segment", 8, 4)
    tes = sampling_of(M.tesnet_resnet50(5, K=10, D=3))
    assert (tes.kind, tes.frames, tes.frame_stride) == ("dense", 10, 1)

    class Probe(nn.Module):
        sampling, frames, frame_stride, crop_size = "dense", 6, 3, 32
        input_mean, input_std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    s = sampling_of(Probe())
    assert (s.kind, s.frames, s.frame_stride, s.crop_size, s.short_side, s.mean) == \
        ("dense", 6, 3, 32, 37, (0.5, 0.5, 0.5))


def test_x3d_models_sample_densely():
    if not hasattr(M, "x3d_xs"):
        pytest.skip("no X3D models in this build")
    s = sampling_of(M.x3d_xs(5))
    assert (s.kind, s.frames, s.frame_stride, s.crop_size, s.short_side) == ("dense", 4, 12, 160, 160)
    assert tuple(s.mean) == (0.45, 0.45, 0.45)
    m = sampling_of(M.x3d_m(5))
    assert (m.frames, m.frame_stride, m.crop_size) == (16, 5, 224)


def _coded_video(T=12, H=37, W=60):
    """Frame t, column x: red = 10 t, green = 2 x, blue = 7: a view's values name its frames and
    columns (37 = the short side of a 32 crop, so nothing is resized)."""
    v = torch.zeros(T, H, W, 3, dtype=torch.uint8)
    v[..., 0] = (10 * torch.arange(T)).view(T, 1, 1).to(torch.uint8)
    v[..., 1] = (2 * torch.arange(W)).view(1, 1, W).to(torch.uint8)
    v[..., 2] = 7
    return v


def test_views_take_the_crops_and_frames_of_the_sampling():
    s = Sampling("segment", 3, segments=3, frames_per_segment=1, crop_size=32, short_side=37,
                 mean=(0, 0, 0), std=(1, 1, 1))
    video = _coded_video()
    one = views_of(video, s, "1x1")
    assert one.shape == (1, 3, 3, 32, 32)
    assert (one[0, 0, :, 0, 0] * 255).round().tolist() == [20, 60, 100]      # frames 2, 6, 10
    assert (one[0, 1, 0, 0, 0] * 255).round().item() == 2 * 14                # centre crop: x from (60 - 32) // 2
    many = views_of(video, s, "3x2")
    assert many.shape == (6, 3, 3, 37, 37)
    starts = [(v[1, 0, 0, 0] * 255).round().item() / 2 for v in many]
    assert starts == [0, 11, 23, 0, 11, 23]                                    # left, centre, right of each clip
    frames = [(v[0, :, 0, 0] * 255).round().tolist() for v in many]
    assert frames[0] == [10, 50, 90] and frames[3] == [30, 70, 110]           # clips at 1/4 and 3/4 of the segments
    norm = views_of(video, Sampling("segment", 3, 3, 1, 1, 32, 37), "1x1")     # ImageNet normalisation
    torch.testing.assert_close(norm[0, 2, 0, 0, 0], torch.tensor((7 / 255 - 0.406) / 0.225))


def test_views_resize_the_short_side():
    s = Sampling("segment", 2, segments=2, crop_size=32, short_side=37)
    v = views_of(torch.randint(0, 255, (4, 74, 100, 3), dtype=torch.uint8), s, "3x1")
    assert v.shape == (3, 3, 2, 37, 37)
    with pytest.raises(ValueError, match="views must be 'CxK'"):
        views_of(torch.zeros(4, 40, 40, 3, dtype=torch.uint8), s, "2x2")


def _tiny_tsm():
    torch.manual_seed(0)
    model = M.tsm_resnet50(4, num_segments=2, dropout=0.0).eval()
    model.crop_size = 32
    with torch.no_grad():
        model.new_fc.weight.normal_(0, 0.5)
    return model


def test_predict_averages_the_softmax_over_the_views():
    model = _tiny_tsm()
    video = torch.randint(0, 255, (10, 40, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mean, per_view = predict_pair = M.predict(model, video, "3x2", return_views=True)
    assert per_view.shape == (6, 4) and mean.shape == (4,)
    with torch.no_grad():
        want = model(views_of(video, sampling_of(model), "3x2")).softmax(-1)
    torch.testing.assert_close(per_view, want)
    torch.testing.assert_close(mean, want.mean(0))
    torch.testing.assert_close(mean.sum(), torch.tensor(1.0))
    torch.testing.assert_close(M.predict(model, video, "3x2", batch_size=1), mean)
    assert predict_pair[0] is mean
    model.train()
    M.predict(model, video)
    assert model.training  # the mode comes back


def test_predict_takes_the_first_output_of_tuple_models():
    model = M.dan_tsm_resnet50(3, num_segments=2, frames_per_segment=2, dropout=0.0)
    model.crop_size = 32
    scores = M.predict(model, torch.randint(0, 255, (9, 37, 37, 3), dtype=torch.uint8))
    assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_predict_rejects_bad_videos():
    model = _tiny_tsm()
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        M.predict(model, torch.zeros(3, 8, 40, 40))
    with pytest.raises(TypeError, match="file path or a tensor"):
        M.predict(model, [1, 2, 3])


@needs_av
def test_predict_on_a_video_file(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "clip.mp4"
    T, H, W = 16, 48, 64
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for t in range(T):
            img = np.full((H, W, 3), 12 * t + 20, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    frames = M.decode_video(path)
    assert frames.shape == (T, H, W, 3) and frames.dtype == torch.uint8
    brightness = frames.float().mean((1, 2, 3))
    torch.testing.assert_close(brightness, 12 * torch.arange(T).float() + 20, atol=6, rtol=0)  # lossy codec
    model = _tiny_tsm()
    torch.testing.assert_close(M.predict(model, str(path), "3x2"), M.predict(model, frames, "3x2"), rtol=0, atol=0)
