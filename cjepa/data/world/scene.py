"""What a world video contains: object attributes, the camera, and the initial conditions of a scene.

The attribute vocabulary is CLEVRER's (3 shapes x 8 colours x 2 materials, all objects the same size, no two
objects alike), so question text and answers fit CLEVRER's vocabulary and one question loader reads both.
A scene is plain data (:class:`ObjectSpec` per object: attributes, the frame it appears, where, how fast);
the simulator turns it into trajectories. Re-simulating a scene with one object left out is therefore exact
and cheap, which is what counterfactual questions are built from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

SHAPES = ("sphere", "cube", "cylinder")
COLOURS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
MATERIALS = ("rubber", "metal")
# The RGB values of CLEVR/CLEVRER's colour names.
COLOUR_RGB = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
OBJECT_RADIUS = 0.35  # every object: sphere radius, cube half side, cylinder radius (height = 2 r); world units


@dataclass(frozen=True)
class ObjectSpec:
    """One object's attributes and initial conditions; ``object_id`` is its index in the scene."""

    object_id: int
    shape: str
    colour: str
    material: str
    spawn_frame: int  # 0: present from the start; > 0: appears (outside the view) at this frame and enters
    position: tuple[float, float]
    velocity: tuple[float, float]
    angle: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "ObjectSpec":
        return ObjectSpec(**{**d, "position": tuple(d["position"]), "velocity": tuple(d["velocity"])})


@dataclass(frozen=True)
class Camera:
    """A simple oblique (orthographic, tilted) view of the ground plane z = 0.

    World x maps to image columns, world y (depth, away from the viewer) and height z to rows:
    ``u = W/2 + s x``, ``v = H/2 - s ((y sin e) + (z - r) cos e)`` with ``s`` pixels per world unit and ``e`` the
    elevation (90 degrees = top-down). The view is ``view_width`` units wide at any resolution, so the same
    scene renders to the same picture at 480x320 and at 64x64 (the depth range follows the aspect ratio).
    """

    width: int
    height: int
    view_width: float = 6.0
    elevation_deg: float = 55.0

    @property
    def scale(self) -> float:
        return self.width / self.view_width

    @property
    def sin_e(self) -> float:
        return math.sin(math.radians(self.elevation_deg))

    @property
    def cos_e(self) -> float:
        return math.cos(math.radians(self.elevation_deg))

    @property
    def half_width(self) -> float:
        return self.view_width / 2

    @property
    def half_depth(self) -> float:
        return self.height / (2 * self.scale * self.sin_e)

    def project(self, x, y, z):
        """World (x, y, z) -> image (u, v) in pixels (continuous; pixel (i, j) has centre (j + 0.5, i + 0.5))."""
        u = self.width / 2 + self.scale * np.asarray(x)
        v = self.height / 2 - self.scale * (np.asarray(y) * self.sin_e + (np.asarray(z) - OBJECT_RADIUS) * self.cos_e)
        return u, v

    def in_view(self, x, y):
        """Whether an object's centre is inside the picture: CLEVRER's ``inside_camera_view``."""
        return (np.abs(np.asarray(x)) <= self.half_width) & (np.abs(np.asarray(y)) <= self.half_depth)

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "view_width": self.view_width,
                "elevation_deg": self.elevation_deg,
                "object_radius": OBJECT_RADIUS,
                "projection": "u = W/2 + s*x; v = H/2 - s*(y*sin(e) + (z - r)*cos(e)); s = W/view_width"}


def sample_scene(rng: np.random.Generator, camera: Camera, *, num_frames: int, min_objects: int,
                 max_objects: int) -> list[ObjectSpec]:
    """Draw a CLEVRER-like scene: some objects at rest in view, some moving, some entering later.

    Moving and entering objects are aimed (with angular noise) at other objects so that collisions are common,
    as in CLEVRER, where videos are chosen to contain events. Attribute triples are distinct.
    """
    if not 1 <= min_objects <= max_objects <= len(SHAPES) * len(COLOURS) * len(MATERIALS):
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    n = int(rng.integers(min_objects, max_objects + 1))
    combos = rng.choice(len(SHAPES) * len(COLOURS) * len(MATERIALS), size=n, replace=False)
    attrs = [(SHAPES[c % 3], COLOURS[(c // 3) % 8], MATERIALS[c // 24]) for c in combos]
    n_enter = int(rng.integers(1, max(1, n // 2) + 1)) if n >= 2 else 0
    n_start = n - n_enter
    hw, hd, r = camera.half_width, camera.half_depth, OBJECT_RADIUS
    # objects present from frame 0: non-overlapping positions well inside the view
    starts: list[np.ndarray] = []
    lo = np.array([-hw + 2.5 * r, -hd + 2.0 * r])
    hi = -lo
    for _ in range(n_start):
        for _attempt in range(200):
            p = rng.uniform(lo, hi)
            if all(np.linalg.norm(p - q) > 3.2 * r for q in starts):
                break
        starts.append(p)
    specs: list[ObjectSpec] = []
    for i in range(n_start):
        moving = i > 0 and rng.random() < 0.5  # the first object always rests: something to be hit
        vel = np.zeros(2)
        if moving:
            target = starts[int(rng.integers(0, i))] if i > 0 else rng.uniform(lo, hi)
            vel = _aim(rng, starts[i], target, speed=rng.uniform(0.8, 2.0))
        specs.append(_spec(i, attrs[i], 0, starts[i], vel, rng))
    for j in range(n_enter):
        i = n_start + j
        frame = int(rng.integers(1, max(2, int(0.55 * num_frames))))
        side = int(rng.integers(0, 4))  # left, right, back, front
        if side < 2:
            x = (-1 if side == 0 else 1) * (hw + 1.5 * r)
            pos = np.array([x, rng.uniform(-hd + r, hd - r)])
        else:
            y = (1 if side == 2 else -1) * (hd + 1.5 * r)
            pos = np.array([rng.uniform(-hw + r, hw - r), y])
        target = starts[int(rng.integers(0, n_start))] if n_start else np.zeros(2)
        specs.append(_spec(i, attrs[i], frame, pos, _aim(rng, pos, target, speed=rng.uniform(2.0, 3.2)), rng))
    return specs


def _aim(rng: np.random.Generator, src: np.ndarray, dst: np.ndarray, speed: float,
         noise_deg: float = 8.0) -> np.ndarray:
    d = np.asarray(dst, float) - np.asarray(src, float)
    ang = math.atan2(d[1], d[0]) + math.radians(rng.normal(0.0, noise_deg))
    return speed * np.array([math.cos(ang), math.sin(ang)])


def _spec(i: int, attr, frame: int, pos, vel, rng) -> ObjectSpec:
    shape, colour, material = attr
    return ObjectSpec(i, shape, colour, material, frame, (float(pos[0]), float(pos[1])), (float(vel[0]), float(vel[1])),
                      float(rng.uniform(0, math.pi / 2)) if shape == "cube" else 0.0)


def describe(spec: ObjectSpec, with_colour: bool = True, with_material: bool = True, with_shape: bool = True) -> str:
    """Noun phrase in CLEVRER's word order (colour, material, shape), e.g. 'red metal cube', 'red object'."""
    words = ([spec.colour] if with_colour else []) + ([spec.material] if with_material else [])
    return " ".join(words + [spec.shape if with_shape else "object"])


def find(specs: list[ObjectSpec], object_id: int) -> Optional[ObjectSpec]:
    return next((s for s in specs if s.object_id == object_id), None)
