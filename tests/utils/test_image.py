"""The one frame resize and the ImageNet statistics (cjepa/utils/image.py)."""

import torch
import torch.nn.functional as F

from cjepa.utils.image import IMAGENET_MEAN, IMAGENET_STD, imagenet_to_unit, resize_frames
from tests.helpers import assert_close_verbose


def test_resize_is_one_antialiased_bilinear_and_commutes_with_normalisation():
    """Frames are resized once (bilinear, antialias); normalising before or after resizing gives the same input
    (Q15)."""
    torch.manual_seed(0)
    x01 = torch.rand(2, 3, 3, 40, 60)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    a = resize_frames((x01 - mean) / std, 28)
    b = (resize_frames(x01, 28) - mean) / std
    assert a.shape == (2, 3, 3, 28, 28)
    assert_close_verbose(a, b, 1e-5, 1e-5, "normalise/resize order")
    ref = F.interpolate(x01.flatten(0, 1), size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    assert_close_verbose(resize_frames(x01, 28).flatten(0, 1), ref, 1e-6, 0, "bilinear antialias")
    assert resize_frames(x01[..., :28, :28], 28) is not None and torch.equal(
        resize_frames(x01[..., :28, :28], 28), x01[..., :28, :28]
    )
    assert_close_verbose(imagenet_to_unit((x01 - mean) / std), x01, 1e-6, 1e-6, "inverse normalisation")


def test_uint8_frames_resize_to_rounded_uint8_with_torch_uint8_kernel():
    """uint8 (T, 3, H, W) channels-last frames (decoded video) stay uint8: exactly torch's uint8 kernel, whose
    fixed-point result is within one grey level of the float kernel's; one side means a square."""
    g = torch.Generator().manual_seed(1)
    hwc = torch.randint(0, 256, (3, 32, 48, 3), dtype=torch.uint8, generator=g)
    x = hwc.permute(0, 3, 1, 2)  # (T, 3, H, W) in channels-last memory, as preprocess_frames hands it over
    out = resize_frames(x, (20, 30))
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 20, 30)
    assert torch.equal(out, F.interpolate(x, size=(20, 30), mode="bilinear", antialias=True, align_corners=False))
    as_float = F.interpolate(x.float(), size=(20, 30), mode="bilinear", antialias=True, align_corners=False)
    assert (out.float() - as_float).abs().max() < 1.0
    assert resize_frames(x, 16).shape == (3, 3, 16, 16)
    assert resize_frames(x, (32, 48)) is x


def test_leading_axes_are_kept_and_match_resizing_each_frame():
    x = torch.rand(2, 4, 3, 18, 18)  # (B, T, 3, H, W)
    out = resize_frames(x, (9, 12))
    assert out.shape == (2, 4, 3, 9, 12)
    assert torch.equal(out[1, 2], resize_frames(x[1, 2], (9, 12)))
    assert resize_frames(x[0, 0], (9, 12)).shape == (3, 9, 12)


def test_imagenet_to_unit_works_on_the_channel_axis_of_any_layout():
    unit = torch.rand(5, 3, 4, 4)
    normed = (unit - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert_close_verbose(imagenet_to_unit(normed), unit, 1e-6, 1e-6, "(T, 3, H, W)")
    assert_close_verbose(imagenet_to_unit(normed[0]), unit[0], 1e-6, 1e-6, "(3, H, W)")
    assert imagenet_to_unit(normed.double()).dtype == torch.float64
