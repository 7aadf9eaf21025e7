"""cjepa.data.world.scene: scene sampling (CLEVRER's attribute rules) and the camera."""

import numpy as np

from cjepa.data.world.scene import COLOURS, MATERIALS, OBJECT_RADIUS, SHAPES, Camera, ObjectSpec, sample_scene


def test_scenes_follow_clevrer_rules():
    """3-6 objects, no two alike, objects at frame 0 in view and apart, late ones enter from outside the view."""
    cam = Camera(480, 320)
    counts = set()
    for seed in range(40):
        specs = sample_scene(np.random.default_rng(seed), cam, num_frames=128, min_objects=3, max_objects=6)
        counts.add(len(specs))
        triples = {(s.shape, s.colour, s.material) for s in specs}
        assert len(triples) == len(specs)
        assert all(s.shape in SHAPES and s.colour in COLOURS and s.material in MATERIALS for s in specs)
        assert [s.object_id for s in specs] == list(range(len(specs)))
        start = [s for s in specs if s.spawn_frame == 0]
        late = [s for s in specs if s.spawn_frame > 0]
        assert late and start
        assert all(cam.in_view(*s.position) for s in start)
        assert not any(cam.in_view(*s.position) for s in late)
        for a in start:
            for b in start:
                if a.object_id < b.object_id:
                    assert np.hypot(a.position[0] - b.position[0], a.position[1] - b.position[1]) > 2 * OBJECT_RADIUS
    assert counts == {3, 4, 5, 6}


def test_camera_view_scales_with_resolution():
    """The same world region is shown at every resolution (the picture is view_width units wide)."""
    big, small = Camera(480, 320), Camera(64, 64)
    assert big.half_width == small.half_width == 3.0
    for cam in (big, small):
        u, v = cam.project(cam.half_width, 0.0, OBJECT_RADIUS)
        assert abs(u - cam.width) < 1e-9 and abs(v - cam.height / 2) < 1e-9
        assert cam.in_view(0.0, cam.half_depth) and not cam.in_view(0.0, cam.half_depth + 1e-6)


def test_spec_json_round_trip():
    s = ObjectSpec(2, "cube", "red", "metal", 5, (1.0, -2.0), (0.5, 0.0), 0.3)
    assert ObjectSpec.from_json(s.to_json()) == s
