"""cjepa.data.world.render: masks are exactly the rendered object pixels (occlusion included); shapes look different."""

import numpy as np
import pytest

from cjepa.data.world.render import Renderer
from cjepa.data.world.scene import OBJECT_RADIUS, Camera, ObjectSpec

CAM = Camera(160, 112)


def scene():
    """Six objects, several overlapping on screen (same x, neighbouring depths), cubes rotated."""
    kinds = [("sphere", "red", "metal"), ("cube", "blue", "rubber"), ("cylinder", "yellow", "metal"),
             ("cube", "gray", "metal"),
             ("sphere", "cyan", "rubber"), ("cylinder", "purple", "rubber")]
    pos = [(-1.0, 0.6), (-1.0, 0.0), (-0.6, -0.5), (1.2, 0.5), (1.0, -0.2), (2.6, 1.0)]
    specs = [ObjectSpec(i, s, c, m, 0, p, (0.0, 0.0), 0.3 * i) for i, ((s, c, m), p) in enumerate(zip(kinds, pos))]
    return specs, np.array(pos), np.array([s.angle for s in specs])


def test_every_mask_pixel_shows_its_object():
    """Mask id k at a pixel <=> the composite pixel is exactly what object k alone renders there; id 0 <=> floor."""
    specs, pos, ang = scene()
    rend = Renderer(CAM)
    rgb, ids = rend.render(specs, pos, ang, np.ones(len(specs), bool))
    assert set(np.unique(ids)) == set(range(len(specs) + 1))
    floor = ids == 0
    np.testing.assert_array_equal(rgb[floor], rend.floor[floor])
    for s in specs:
        only = np.zeros(len(specs), bool)
        only[s.object_id] = True
        solo_rgb, solo_ids = rend.render(specs, pos, ang, only)
        mine = ids == s.object_id + 1
        assert mine.any()
        assert (solo_ids[mine] == s.object_id + 1).all()  # the object covers every pixel labelled with it
        np.testing.assert_array_equal(rgb[mine], solo_rgb[mine])  # ... and that pixel shows the object's own colour
        hidden = (solo_ids == s.object_id + 1) & ~mine
        # a covered-but-not-labelled pixel belongs to an object nearer the camera (smaller depth y)
        for other in np.unique(ids[hidden]):
            assert other != 0 and pos[other - 1, 1] < pos[s.object_id, 1]


def test_nearer_object_occludes():
    """Objects 0 and 1 share x; 1 is nearer (smaller y), so it wins the overlap in both image and mask."""
    specs, pos, ang = scene()
    rend = Renderer(CAM)
    only01 = np.array([1, 1, 0, 0, 0, 0], bool)
    rgb, ids = rend.render(specs, pos, ang, only01)
    _, ids0 = rend.render(specs, pos, ang, np.array([1, 0, 0, 0, 0, 0], bool))
    _, ids1 = rend.render(specs, pos, ang, np.array([0, 1, 0, 0, 0, 0], bool))
    overlap = (ids0 == 1) & (ids1 == 2)
    assert overlap.sum() > 10
    assert (ids[overlap] == 2).all()


def test_masks_sit_where_the_states_say():
    """Each mask's centroid is close to the projection of the object's centre (masks agree with the state table)."""
    specs, pos, ang = scene()
    rend = Renderer(CAM)
    for s in specs:
        only = np.zeros(len(specs), bool)
        only[s.object_id] = True
        _, ids = rend.render(specs, pos, ang, only)
        rows, cols = np.nonzero(ids == s.object_id + 1)
        u, v = CAM.project(pos[s.object_id, 0], pos[s.object_id, 1], OBJECT_RADIUS)
        assert abs(cols.mean() + 0.5 - u) < 2.0 and abs(rows.mean() + 0.5 - v) < 0.25 * OBJECT_RADIUS * CAM.scale + 2


@pytest.mark.parametrize("a,b", [("sphere", "cube"), ("sphere", "cylinder"), ("cube", "cylinder")])
def test_shapes_are_distinguishable(a, b):
    """Same place, same colour: silhouettes differ (IoU well below 1) and so do the pixels."""
    rend = Renderer(Camera(96, 64))
    out = {}
    for shape in (a, b):
        s = ObjectSpec(0, shape, "green", "rubber", 0, (0.0, 0.0), (0.0, 0.0), 0.4)
        out[shape] = rend.render([s], np.zeros((1, 2)), np.array([0.4]), np.ones(1, bool))
    ma, mb = out[a][1] > 0, out[b][1] > 0
    iou = (ma & mb).sum() / (ma | mb).sum()
    assert iou < 0.85
    assert np.abs(out[a][0].astype(int) - out[b][0])[ma | mb].mean() > 10.0


def test_metal_and_rubber_look_different():
    rend = Renderer(Camera(96, 64))
    looks = {}
    for m in ("metal", "rubber"):
        s = ObjectSpec(0, "sphere", "blue", m, 0, (0.0, 0.0), (0.0, 0.0))
        rgb, ids = rend.render([s], np.zeros((1, 2)), np.zeros(1), np.ones(1, bool))
        px = rgb[ids > 0].astype(float)
        looks[m] = (px.max(0).min(), px.mean())  # specular highlight is white on metal
    assert looks["metal"][0] > 200 > looks["rubber"][0]
