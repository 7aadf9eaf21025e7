"""Push-T with stable-worldmodel's semantics, as a thin adapter over gym-pusht's physics.

Semantics (those of ``swm/PushT-v1``, which C-JEPA's planning protocol uses; spec section 3.4):

* action ``a`` in [-1, 1]^2 is **relative**: the PD target is ``agent position + 100 px * a``; each env step
  runs 10 substeps of dt = 0.01 s with ``acc = k_p (target - pos) - k_v vel``, k_p = 100, k_v = 20.
* state = (agent x, agent y, block x, block y, block angle mod 2 pi, agent vx, agent vy) in 512-px world units;
  proprio = (agent x, agent y, agent vx, agent vy).
* success (:func:`is_success`): ||goal[:4] - state[:4]||_2 < 20 px over agent and block positions **and** the
  wrapped block-angle error < pi / 9. The evaluation counts an episode as solved if this holds at any step.
* resets put the world exactly into a given state: block angle first, then position (pymunk rotates a body
  about its centre of gravity, so setting the position first and the angle second moves the block away
  from the requested position; gym-pusht's own ``reset_to_state`` does exactly that).

Why an adapter over gym-pusht rather than our own pymunk world or stable-worldmodel:
gym-pusht 0.1.8 builds the same world as stable-worldmodel (walls at 5/506, kinematic agent disc r = 15,
T block = 120x30 bar + 30x90 stem, mass 1, no gravity, damping 0; a replayed contact trajectory agrees to
< 0.01 px), is light (pymunk 6, pygame, shapely, opencv; no torch pin), and stable-worldmodel cannot be
installed beside our torch (it pins torch/torchvision builds and needs pymunk >= 7). Owning the world would
duplicate its body construction for no gain. What differs between the two is semantics, not physics, so the
adapter keeps gym-pusht's space, bodies and drawing (``_setup``, ``_draw``; private, hence the exact version
pin in setup.py and a test of the geometry constants) and owns everything with a protocol meaning: the
relative PD step (gym-pusht takes absolute targets and evaluates shapely coverage every step), the 7-d state,
the angle-first exact reset, the success rule, rendering at any size, and instance masks.

One deliberate difference from stable-worldmodel: its ``_set_state`` advances physics by one dt after
placing the bodies (moving the agent by velocity * 0.01 s). We do not step, so the state read back after a
reset is the state that was asked for; collisions of an overlapping start are resolved by the next step.
Space damping 0 means pymunk multiplies velocities by 0 ** dt each substep: the block moves only while
pushed (quasi-static), which the scripted expert relies on.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
from pymunk._chipmunk import lib as _cp  # the engine's C step (PushTEnv.simulate)

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen only
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

WORLD_SIZE = 512
ACTION_SCALE = 100.0  # px per unit of relative action
K_P, K_V = 100.0, 20.0
DT = 0.01
SUBSTEPS = 10  # control at 10 Hz
AGENT_RADIUS = 15.0
POS_TOLERANCE = 20.0  # px, over the 4 position numbers (agent xy, block xy)
ANGLE_TOLERANCE = math.pi / 9

# Block geometry in body-local coordinates (y points down on screen). The state's (x, y) is the body origin,
# not the centre of gravity.
T_BAR = np.array([[-60.0, 30.0], [60.0, 30.0], [60.0, 0.0], [-60.0, 0.0]])
T_STEM = np.array([[-15.0, 30.0], [-15.0, 120.0], [15.0, 120.0], [15.0, 30.0]])
T_COG = np.array([0.0, 45.0])  # mean of the two box centroids, as gym-pusht sets it

AGENT_ID, BLOCK_ID = 1, 2  # instance ids in masks; 0 = background (including the drawn goal T)
_UNHANDLED_COLLISION_TYPE = 1  # gym-pusht registers a handler for type 0 (its default) only


class PushTError(ValueError):
    """Bad input to the Push-T environment (wrong shape, non-finite values)."""


def wrap_angle(a):
    """Angle(s) to (-pi, pi]."""
    return np.pi - np.mod(np.pi - np.asarray(a, dtype=np.float64), 2 * np.pi)


def angle_error(goal_angle, angle):
    """Absolute wrapped difference in [0, pi]; works for any representatives of the two angles."""
    d = np.mod(np.asarray(goal_angle, np.float64) - np.asarray(angle, np.float64), 2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def position_error(goal_state, state):
    """||goal[:4] - state[:4]||_2 (agent and block positions together), batched over leading dims."""
    g, s = np.asarray(goal_state, np.float64), np.asarray(state, np.float64)
    return np.linalg.norm(g[..., :4] - s[..., :4], axis=-1)


def is_success(goal_state, state, pos_tol: float = POS_TOLERANCE, angle_tol: float = ANGLE_TOLERANCE):
    """stable-worldmodel's ``eval_state`` rule (strict inequalities), batched over leading dims."""
    g, s = np.asarray(goal_state, np.float64), np.asarray(state, np.float64)
    return (position_error(g, s) < pos_tol) & (angle_error(g[..., 4], s[..., 4]) < angle_tol)


def state_to_proprio(state):
    """(..., 7) state -> (..., 4) proprio = agent position + agent velocity."""
    s = np.asarray(state)
    return np.concatenate([s[..., :2], s[..., 5:7]], axis=-1)


def block_polygons(x: float, y: float, angle: float) -> list[np.ndarray]:
    """World coordinates of the T's two boxes, each (4, 2), for a block pose."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return [p @ rot.T + (x, y) for p in (T_BAR, T_STEM)]


def block_cog(pose) -> np.ndarray:
    """World centre of gravity of a block pose (x, y, angle), batched over leading dims."""
    p = np.asarray(pose, np.float64)
    c, s = np.cos(p[..., 2]), np.sin(p[..., 2])
    return np.stack([p[..., 0] + c * T_COG[0] - s * T_COG[1], p[..., 1] + s * T_COG[0] + c * T_COG[1]], axis=-1)


def check_state(state, where: str = "state") -> np.ndarray:
    s = np.asarray(state, dtype=np.float64)
    if s.shape != (7,):
        raise PushTError(f"{where} must be 7 numbers (agent x, y, block x, y, angle, agent vx, vy); got shape "
                         f"{s.shape}")
    if not np.isfinite(s).all():
        raise PushTError(f"{where} has non-finite values: {s.tolist()}")
    # No range check: the kinematic agent does not collide with the walls, so relative actions can take it
    # outside the arena (stable-worldmodel does not clip either), and such states must stay resettable.
    return s


def agent_overlaps_block(state, margin: float = 0.0) -> bool:
    """Whether the agent disc (radius + margin) intersects the T of this state."""
    from shapely.geometry import Point, Polygon

    s = np.asarray(state, np.float64)
    polys = [Polygon(p) for p in block_polygons(s[2], s[3], s[4])]
    disc = Point(s[0], s[1])
    return any(p.distance(disc) < AGENT_RADIUS + margin for p in polys)


def block_inside(pose, margin: float) -> bool:
    """Whether every corner of the T at ``pose`` lies at least ``margin`` px inside the walls (5 / 506)."""
    corners = np.concatenate(block_polygons(*np.asarray(pose, np.float64)[:3]))
    return bool(((corners >= 5 + margin) & (corners <= 506 - margin)).all())


def sample_state(rng: np.random.Generator, margin: float = 5.0) -> np.ndarray:
    """A random start state with stable-worldmodel's default ranges, agent not touching the block.

    Agent position ~ U[50, 450]^2, block position ~ U[100, 400]^2, block angle ~ U[-2 pi, 2 pi] (stored mod 2 pi),
    agent at rest. Unlike stable-worldmodel (a TODO there) we reject starts where the agent overlaps the block
    or the T pokes into a wall, which the first physics step would resolve by teleporting the block.
    """
    for _ in range(1000):
        agent = rng.uniform(50, 450, 2)
        block = rng.uniform(100, 400, 2)
        angle = float(np.mod(rng.uniform(-2 * np.pi, 2 * np.pi), 2 * np.pi))
        state = np.array([*agent, *block, angle, 0.0, 0.0])
        if not agent_overlaps_block(state, margin) and block_inside(state[2:5], 2.0):
            return state
    raise RuntimeError("could not sample a non-overlapping Push-T state in 1000 tries")


class PushTEnv:
    """One Push-T world. ``reset(state, goal_state)`` -> obs; ``step(action)`` -> (obs, success, info).

    ``obs`` = {"state": (7,), "proprio": (4,)}; frames come from :meth:`render` (``render_size`` square RGB)
    and instance masks from :meth:`render_masks`, only when asked for (rendering dominates the cost).
    """

    def __init__(self, render_size: int = 224):
        try:
            from gym_pusht.envs.pusht import PushTEnv as _GymPushT
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError("Push-T needs gym-pusht==0.1.8 (pip install -e '.[pusht]')") from err
        if render_size < 8:
            raise PushTError(f"render_size must be >= 8 px, got {render_size}")
        self.render_size = int(render_size)
        self._sim = _GymPushT(obs_type="state", render_mode="rgb_array")
        self.goal_state: Optional[np.ndarray] = None
        self.goal_frame: Optional[np.ndarray] = None
        self.goal_frames: dict[int, np.ndarray] = {}  # the goal rendered at other sides (reset's goal_sizes)
        self.goal_masks: dict[int, np.ndarray] = {}  # and its instance masks at those sides
        self._sim._setup()

    # ------------------------------------------------------------------ state

    @property
    def agent(self):
        return self._sim.agent

    @property
    def block(self):
        return self._sim.block

    def get_state(self) -> np.ndarray:
        a, b = self.agent, self.block
        return np.array(
            [a.position.x, a.position.y, b.position.x, b.position.y, b.angle % (2 * np.pi), a.velocity.x, a.velocity.y],
            dtype=np.float64,
        )

    def observation(self) -> dict[str, np.ndarray]:
        s = self.get_state()
        return {"state": s, "proprio": state_to_proprio(s)}

    def set_state(self, state) -> None:
        """Place the bodies exactly at ``state`` (angle before position; see the module docstring)."""
        s = check_state(state)
        self.agent.velocity = (float(s[5]), float(s[6]))
        self.agent.position = (float(s[0]), float(s[1]))
        self.block.velocity = (0.0, 0.0)
        self.block.angular_velocity = 0.0
        self.block.angle = float(s[4])
        self.block.position = (float(s[2]), float(s[3]))
        for body in (self.agent, self.block):
            self._sim.space.reindex_shapes_for_body(body)

    def reset(self, state=None, goal_state=None, *, seed: Optional[int] = None, render_goal: bool = False,
              goal_sizes: tuple[int, ...] = ()) -> dict:
        """Fresh world in ``state`` (random if None, from ``seed``); ``goal_state`` is what success compares to.

        With ``render_goal`` the goal frame is rendered (like stable-worldmodel: place the goal, render, then
        place the start) and kept in ``self.goal_frame``; ``goal_sizes`` renders it also at those sides, each from
        the 512-px drawing, into ``self.goal_frames[size]`` with its instance masks in ``self.goal_masks[size]`` (a
        pixel planner reads the goal at its encoder's size).
        """
        rng = np.random.default_rng(seed)
        self._sim._setup()  # new space and bodies: no contact caches survive from an earlier episode
        start = sample_state(rng) if state is None else check_state(state)
        self.goal_state = None if goal_state is None else check_state(goal_state, "goal_state")
        self.goal_frame = None
        self.goal_frames, self.goal_masks = {}, {}
        if render_goal or goal_sizes:
            if self.goal_state is None:
                raise PushTError("render_goal needs a goal_state")
            self.set_state(self.goal_state)
            if render_goal:
                self.goal_frame = self.render()
            self.goal_frames = {size: self.render(size) for size in goal_sizes}
            self.goal_masks = {size: self.render_masks(size) for size in goal_sizes}
            self._sim._setup()
        self.set_state(start)
        return self.observation()

    # ------------------------------------------------------------------ dynamics

    def step(self, action) -> tuple[dict, bool, dict]:
        """Relative PD step. Returns (obs, success against goal_state (False without a goal), info)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise PushTError(f"action must be 2 finite numbers, got {np.asarray(action).tolist()}")
        target = self._advance(float(a[0]), float(a[1]))
        obs = self.observation()
        success = bool(is_success(self.goal_state, obs["state"])) if self.goal_state is not None else False
        return obs, success, {"target": target}

    def _advance(self, ax: float, ay: float) -> np.ndarray:
        """The physics of one step (PD substeps) for an already checked action; returns the PD target."""
        agent, space = self.agent, self._sim.space
        tx, ty = agent.position.x + ACTION_SCALE * ax, agent.position.y + ACTION_SCALE * ay
        for _ in range(SUBSTEPS):
            vx, vy = agent.velocity
            px, py = agent.position
            agent.velocity = (vx + (K_P * (tx - px) - K_V * vx) * DT, vy + (K_P * (ty - py) - K_V * vy) * DT)
            space.step(DT)
        return np.array([tx, ty])

    def simulate(self, start_state, actions, every: int = 1) -> np.ndarray:
        """Replay ``actions`` (N, 2) from a fresh world in ``start_state``; the states after every ``every``-th
        step, (N // every, 7). The same physics as :meth:`reset` + N x :meth:`step` (bit for bit), without the
        per-step observation dicts, success checks and contact bookkeeping: what a planner needs to score a
        candidate. The world is left in the final state, without contact counting until the next reset."""
        acts = np.asarray(actions, np.float64).reshape(-1, 2)
        if not np.isfinite(acts).all():
            raise PushTError("simulate: actions must be finite")
        s = self.reset(start_state)["state"]
        agent, block = self.agent, self.block
        # gym-pusht counts contact points in a Python post-solve callback on collision type 0, about a third of
        # the replay's time where the agent pushes. The count enters no state, so the block's shapes move to a
        # type without a handler (the default one: the same contact solution). What is left is the engine's step;
        # it is called directly, as Space.step adds only bookkeeping of objects queued from callbacks (none here).
        for shape in block.shapes:
            shape.collision_type = _UNHANDLED_COLLISION_TYPE
        step, space = _cp.cpSpaceStep, self._sim.space._space
        # The agent is a kinematic body: contacts never move it, and the engine integrates it as p += v dt. So
        # its path is the PD law alone, computed here with the engine's floating-point operations, which saves
        # reading its position and velocity back every substep; only its velocity is handed to the engine.
        px, py, vx, vy = float(s[0]), float(s[1]), float(s[5]), float(s[6])
        out = np.empty((len(acts) // every, 7))
        for i, (ax, ay) in enumerate(acts.tolist()):
            tx, ty = px + ACTION_SCALE * ax, py + ACTION_SCALE * ay
            for _ in range(SUBSTEPS):
                vx, vy = vx + (K_P * (tx - px) - K_V * vx) * DT, vy + (K_P * (ty - py) - K_V * vy) * DT
                agent.velocity = (vx, vy)
                step(space, DT)
                px, py = px + vx * DT, py + vy * DT
            if (i + 1) % every == 0:
                b = block.position
                out[(i + 1) // every - 1] = (px, py, b.x, b.y, block.angle % (2 * np.pi), vx, vy)
        return out

    # ------------------------------------------------------------------ rendering

    def render(self, size: Optional[int] = None) -> np.ndarray:
        """RGB frame (size, size, 3) uint8: gym-pusht's 512-px drawing (fixed green goal T in the background),
        resized with bilinear interpolation, as both packages do."""
        import cv2
        import pygame

        size = size or self.render_size
        screen = self._sim._draw()
        img = np.transpose(np.array(pygame.surfarray.pixels3d(screen)), (1, 0, 2))
        if size != WORLD_SIZE:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(img, dtype=np.uint8)

    def render_masks(self, size: Optional[int] = None) -> np.ndarray:
        """Instance ids (size, size) uint8: 0 background, 1 agent, 2 block. Rasterised from the geometry
        directly (cheap); the block is painted after the agent, as it is drawn."""
        return render_masks_from_state(self.get_state(), size or self.render_size)


def render_masks_from_state(state, size: int) -> np.ndarray:
    """Instance-id mask of a state without a simulator (pixel centres sampled, 4 bits of sub-pixel precision)."""
    import cv2

    s = np.asarray(state, np.float64)
    scale = size / WORLD_SIZE
    mask = np.zeros((size, size), np.uint8)
    shift = 4
    # A world point p lands on output pixel coordinate p * scale - 0.5 (pixel centres at integer coordinates).
    to_px = lambda pts: np.round((np.asarray(pts) * scale - 0.5) * (1 << shift)).astype(np.int32)  # noqa: E731
    centre = to_px(s[:2])
    radius = int(round(AGENT_RADIUS * scale * (1 << shift)))
    cv2.circle(mask, (int(centre[0]), int(centre[1])), radius, AGENT_ID, -1, cv2.LINE_8, shift)
    for poly in block_polygons(s[2], s[3], s[4]):
        cv2.fillPoly(mask, [to_px(poly)], BLOCK_ID, cv2.LINE_8, shift)
    return mask
