"""cjepa.data.world.physics: deterministic pymunk simulation, spawning, collision events, exact re-simulation without
an object."""

import numpy as np

from cjepa.data.world.physics import simulate
from cjepa.data.world.scene import OBJECT_RADIUS, Camera, ObjectSpec, sample_scene


def obj(i, x, y, vx=0.0, vy=0.0, shape="sphere", material="rubber", spawn=0, colour=None):
    colours = ["red", "blue", "green", "yellow", "cyan", "purple", "brown", "gray"]
    return ObjectSpec(i, shape, colour or colours[i], material, spawn, (x, y), (vx, vy), 0.0)


def chain():
    """X (0) rolls into Y (1), which is knocked into Z (2); W (3) rests far away."""
    return [obj(0, -2.5, 0.0, vx=3.0), obj(1, -0.5, 0.0, shape="cube"), obj(2, 1.2, 0.0, shape="cylinder"),
            obj(3, 0.0, -2.0)]


def test_simulation_is_deterministic():
    """Same scene -> bit-identical trajectories and events (counterfactuals and reproducible datasets rely on it)."""
    specs = sample_scene(np.random.default_rng(5), Camera(480, 320), num_frames=60, min_objects=5, max_objects=6)
    a, b = simulate(specs, 80, fps=25), simulate(specs, 80, fps=25)
    for name in ("position", "velocity", "angle", "angular_velocity", "present"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [(c.frame, c.a, c.b) for c in a.collisions] == [(c.frame, c.a, c.b) for c in b.collisions]


def test_head_on_collision_is_recorded_at_contact():
    """Two spheres meet: one event, stamped at the first frame after contact, and the pair moves apart afterwards."""
    specs = [obj(0, -1.5, 0.0, vx=2.0), obj(1, 1.5, 0.0, vx=-2.0)]
    tr = simulate(specs, 50, fps=25)
    assert [(c.a, c.b) for c in tr.collisions] == [(0, 1)]
    f = tr.collisions[0].frame
    gap = np.linalg.norm(tr.position[:, 0] - tr.position[:, 1], axis=-1)
    assert gap[f - 1] > 2 * OBJECT_RADIUS - 1e-3 and gap[f] < gap[f - 1] + 0.2
    assert tr.velocity[-1, 0, 0] < 0 < tr.velocity[-1, 1, 0]  # bounced
    assert abs(tr.collisions[0].location[0]) < 0.1


def test_spawned_objects_are_absent_before_their_frame():
    specs = [obj(0, 0.0, 0.0), obj(1, -4.0, 0.0, vx=2.5, spawn=10)]
    tr = simulate(specs, 30, fps=25)
    assert not tr.present[:10, 1].any() and tr.present[10:, 1].all()
    np.testing.assert_allclose(tr.position[10, 1], (-4.0, 0.0))
    assert tr.position[29, 1, 0] > -4.0


def test_removing_an_uninvolved_object_changes_nothing_else():
    """Re-simulation without a resting, untouched object reproduces every other trajectory exactly."""
    specs = chain()
    full, without = simulate(specs, 90, fps=25), simulate(specs, 90, fps=25, removed=[3])
    np.testing.assert_array_equal(full.position[:, :3], without.position[:, :3])
    assert not without.present[:, 3].any()
    assert full.collision_pairs() == without.collision_pairs() == {(0, 1), (1, 2)}


def test_removing_the_cause_removes_its_consequences():
    """Without X, Y is never hit, so Y never hits Z: the counterfactual collision set loses (Y, Z), Z stays at rest."""
    specs = chain()
    without = simulate(specs, 90, fps=25, removed=[0])
    assert without.collision_pairs() == set()
    np.testing.assert_allclose(without.position[-1, 2], specs[2].position)


def test_floor_friction_stops_objects_and_shapes_differ():
    """Sliding cubes stop sooner than rolling spheres; metal (heavy) pushes rubber (light) further than the reverse."""
    tr = simulate([obj(0, 0.0, 1.0, vx=1.5), obj(1, 0.0, -1.0, vx=1.5, shape="cube")], 100, fps=25)
    assert tr.position[-1, 0, 0] > tr.position[-1, 1, 0] > 0.5
    assert np.linalg.norm(tr.velocity[-1, 1]) < np.linalg.norm(tr.velocity[-1, 0])
    heavy = simulate([obj(0, -1.0, 0.0, vx=2.0, material="metal"), obj(1, 0.0, 0.0)], 60, fps=25)
    light = simulate([obj(0, -1.0, 0.0, vx=2.0), obj(1, 0.0, 0.0, material="metal")], 60, fps=25)
    assert heavy.position[-1, 1, 0] > light.position[-1, 1, 0]
