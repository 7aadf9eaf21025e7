"""Rigid-body simulation of a world scene with pymunk (Chipmunk2D).

Why pymunk: the objects slide and roll on one plane, so the dynamics that matter (contacts between convex
shapes, restitution, friction-driven spin of cubes, mass ratios between metal and rubber) are 2-D rigid-body
dynamics, which Chipmunk solves properly (iterative impulse solver with persistent contacts). pymunk is a
wheel with no system dependencies, is deterministic for identical inputs (re-simulating a scene reproduces
it exactly, which counterfactual questions rely on), simulates a 6-object video in milliseconds, and is
already in the stack for Push-T. Version 6 is required: gym-pusht pins pymunk < 7, and 7 changed the
collision-handler API. CLEVRER itself used Bullet in 3-D; its objects never leave the floor, so the third
dimension adds nothing to these videos.

Top view: every object's footprint is a disc (sphere, cylinder) or a square (cube) of the same size. Contact
with the floor is modelled as per-shape damping (rolling spheres keep going; sliding cubes and cylinders
stop sooner), applied after every substep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from cjepa.data.world.scene import OBJECT_RADIUS, ObjectSpec

# material -> (density, elasticity); pymunk multiplies the elasticities of the two shapes in contact
MATERIAL_PHYSICS = {"metal": (3.0, 0.75), "rubber": (1.2, 0.95)}
# shape -> (exponential decay rate 1/s, linear deceleration units/s^2, angular decay rate 1/s)
FLOOR_FRICTION = {"sphere": (0.10, 0.12), "cylinder": (0.25, 0.40), "cube": (0.30, 0.55)}
ANGULAR_DECAY = {"sphere": 0.5, "cylinder": 1.0, "cube": 1.5}
CONTACT_FRICTION = 0.4
COLLISION_MERGE_FRAMES = 4  # a pair touching again within this many frames is the same collision event


@dataclass
class Collision:
    frame: int  # first recorded frame after contact began
    a: int
    b: int  # object ids, a < b
    location: tuple[float, float]


@dataclass
class Trajectory:
    """Per-frame states of every object of a scene (absent objects: present False, state at spawn pose)."""

    position: np.ndarray  # (F, N, 2) world units
    velocity: np.ndarray  # (F, N, 2) units / s
    angle: np.ndarray  # (F, N) radians
    angular_velocity: np.ndarray  # (F, N) rad / s
    present: np.ndarray  # (F, N) bool: object exists in the world at this frame
    collisions: list[Collision]

    @property
    def num_frames(self) -> int:
        return self.position.shape[0]

    def collision_pairs(self, first: int = 0, stop: int | None = None) -> set[tuple[int, int]]:
        stop = self.num_frames if stop is None else stop
        return {(c.a, c.b) for c in self.collisions if first <= c.frame < stop}


def _require_pymunk():
    import pymunk

    major = int(pymunk.version.split(".")[0])
    if major != 6:
        raise ImportError("the world simulator needs pymunk 6.x (gym-pusht pins < 7; 7 changed the collision API), "
                          f"found {pymunk.version}")
    return pymunk


def simulate(specs: list[ObjectSpec], num_frames: int, *, fps: float, substeps: int = 4,
             removed: Iterable[int] = ()) -> Trajectory:
    """Simulate a scene for ``num_frames`` frames (frame 0 = initial state); objects in ``removed`` never appear.

    Objects appear at their ``spawn_frame`` (state recorded from that frame on). Collision events are pymunk
    contact begins between two objects, stamped with the first frame recorded after them; a pair that touches
    again within ``COLLISION_MERGE_FRAMES`` frames (resting contact, double bounce) is one event.
    """
    pymunk = _require_pymunk()
    removed = set(removed)
    n = len(specs)
    dt = 1.0 / (fps * substeps)
    space = pymunk.Space()
    space.iterations = 20
    bodies: dict[int, object] = {}
    shape_owner: dict[int, int] = {}
    events: list[Collision] = []
    last_touch: dict[tuple[int, int], int] = {}
    frame_now = [0]

    def on_begin(arbiter, _space, _data) -> bool:
        sa, sb = arbiter.shapes
        a, b = sorted((shape_owner[id(sa)], shape_owner[id(sb)]))
        frame = frame_now[0] + 1
        prev = last_touch.get((a, b))
        last_touch[(a, b)] = frame
        if prev is None or frame - prev > COLLISION_MERGE_FRAMES:
            pts = arbiter.contact_point_set.points
            loc = pts[0].point_a if pts else (bodies[a].position + bodies[b].position) / 2
            events.append(Collision(frame, a, b, (float(loc[0]), float(loc[1]))))
        return True

    def on_post_solve(arbiter, _space, _data) -> None:  # resting contact keeps the pair "touching"
        sa, sb = arbiter.shapes
        last_touch[tuple(sorted((shape_owner[id(sa)], shape_owner[id(sb)])))] = frame_now[0] + 1

    handler = space.add_default_collision_handler()
    handler.begin = on_begin
    handler.post_solve = on_post_solve

    pos = np.zeros((num_frames, n, 2))
    vel = np.zeros((num_frames, n, 2))
    ang = np.zeros((num_frames, n))
    angv = np.zeros((num_frames, n))
    present = np.zeros((num_frames, n), bool)
    for s in specs:  # absent objects report their spawn pose
        pos[:, s.object_id] = s.position
        ang[:, s.object_id] = s.angle
    damping = {}
    for s in specs:
        k_exp, k_lin = FLOOR_FRICTION[s.shape]
        damping[s.object_id] = (math.exp(-k_exp * dt), k_lin * dt, math.exp(-ANGULAR_DECAY[s.shape] * dt))

    for f in range(num_frames):
        for s in specs:
            if s.spawn_frame == f and s.object_id not in removed:
                body, shape = _make_body(pymunk, s)  # keep `shape` referenced: pymunk bodies hold shapes weakly
                space.add(body, shape)
                shape_owner[id(shape)] = s.object_id
                bodies[s.object_id] = body
        for i, body in bodies.items():
            pos[f, i] = body.position
            vel[f, i] = body.velocity
            ang[f, i] = body.angle
            angv[f, i] = body.angular_velocity
            present[f, i] = True
        if f == num_frames - 1:
            break
        frame_now[0] = f
        for _ in range(substeps):
            space.step(dt)
            for i, body in bodies.items():
                _apply_floor_friction(body, *damping[i])
    return Trajectory(pos, vel, ang, angv, present, events)


def _make_body(pymunk, s: ObjectSpec):
    density, elasticity = MATERIAL_PHYSICS[s.material]
    r = OBJECT_RADIUS
    if s.shape == "cube":
        mass = density * (2 * r) ** 2
        body = pymunk.Body(mass, pymunk.moment_for_box(mass, (2 * r, 2 * r)))
        shape = pymunk.Poly.create_box(body, (2 * r, 2 * r), radius=0.0)
    else:
        mass = density * math.pi * r * r
        body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0.0, r))
        shape = pymunk.Circle(body, r)
    shape.elasticity, shape.friction = elasticity, CONTACT_FRICTION
    body.position, body.velocity, body.angle = s.position, s.velocity, s.angle
    return body, shape


def _apply_floor_friction(body, exp_factor: float, lin_step: float, ang_factor: float) -> None:
    vx, vy = body.velocity
    speed = math.hypot(vx, vy)
    if speed > 0.0:
        new = max(speed * exp_factor - lin_step, 0.0)
        body.velocity = (vx * new / speed, vy * new / speed)
    body.angular_velocity = body.angular_velocity * ang_factor
