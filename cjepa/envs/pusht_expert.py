"""Scripted Push-T policies: a pushing expert that brings the T to a goal pose, and random exploration.

Neither Push-T package ships an expert, and the C-JEPA planning protocol draws its start/goal pairs from
expert trajectories, so we script one. It acts on the state alone (no simulator access):

Mechanics it exploits. With space damping 0 the block keeps no velocity between substeps (quasi-static),
and the shapes have no friction, so a push by the agent disc at contact point r (from the block's centre of
gravity) along the face's inward normal n moves the block by the impulse response
``dc = n / k, dtheta = (r x n) / I / k`` per pixel of pusher travel, with ``k = 1 + (r x n)^2 / I`` (mass 1,
moment I = 3000 as gym-pusht builds it).

Each step it (1) scores candidate contacts sampled along the T's outer faces (only points the disc can
touch without hitting the other box) by how much a push there can reduce the pose error
``e = (cog error, rho * angle error)`` in a least-squares sense, keeping its current contact unless another is
clearly better (hysteresis against dithering); (2) if the disc sits in front of that contact, pushes along the
normal by the optimal distance (capped); otherwise (3) travels to the pre-contact point along a collision-free
path (straight if clear, else through a ring of waypoints around the block, shortest path on their visibility
graph). Actions are PD targets expressed relative to the agent, clipped to [-1, 1].

:class:`RandomExplorer` is stable-worldmodel's ``WeakPolicy`` (uniform relative actions, targets clipped to a
box around the block so that random play still makes contact).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cjepa.envs.pusht import (
    ACTION_SCALE,
    AGENT_RADIUS,
    T_BAR,
    T_STEM,
    angle_error,
    block_cog,
    block_polygons,
    wrap_angle,
)

BLOCK_MOMENT = 3000.0  # body.moment of gym-pusht's T (2 x moment_for_poly of the bar, mass 1)


def _outer_faces() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(start, end, inward normal) of the T outline faces in local coordinates (y down)."""
    return [
        (np.array([-60.0, 0.0]), np.array([60.0, 0.0]), np.array([0.0, 1.0])),  # top of the bar
        (np.array([-60.0, 0.0]), np.array([-60.0, 30.0]), np.array([1.0, 0.0])),  # left end
        (np.array([60.0, 0.0]), np.array([60.0, 30.0]), np.array([-1.0, 0.0])),  # right end
        (np.array([-60.0, 30.0]), np.array([-15.0, 30.0]), np.array([0.0, -1.0])),  # under the bar, left
        (np.array([15.0, 30.0]), np.array([60.0, 30.0]), np.array([0.0, -1.0])),  # under the bar, right
        (np.array([-15.0, 30.0]), np.array([-15.0, 120.0]), np.array([1.0, 0.0])),  # stem, left side
        (np.array([15.0, 30.0]), np.array([15.0, 120.0]), np.array([-1.0, 0.0])),  # stem, right side
        (np.array([-15.0, 120.0]), np.array([15.0, 120.0]), np.array([0.0, -1.0])),  # stem bottom
    ]


def _box_distance(p: np.ndarray, box: np.ndarray) -> float:
    lo, hi = box.min(0), box.max(0)
    d = np.maximum(np.maximum(lo - p, 0), p - hi)
    return float(np.hypot(*d))


def contact_candidates(spacing: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Local contact points (K, 2) and inward normals (K, 2) the agent disc can reach from outside."""
    pts, normals = [], []
    for a, b, n in _outer_faces():
        length = float(np.linalg.norm(b - a))
        for t in np.linspace(0, 1, max(2, int(length // spacing) + 1))[1:-1]:
            p = a + t * (b - a)
            centre = p - n * AGENT_RADIUS
            # The disc touches its own face (distance 15); it must stay 3 px clear of the other box so it can
            # come and go along the normal in the concave corners under the bar.
            dists = sorted([_box_distance(centre, T_BAR), _box_distance(centre, T_STEM)])
            if dists[0] >= AGENT_RADIUS - 1e-6 and dists[1] >= AGENT_RADIUS + 3.0:
                pts.append(p)
                normals.append(n)
    return np.array(pts), np.array(normals)


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances of points p to segments ab, broadcast over leading dims (..., 2)."""
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def segments_polygon_distance(p: np.ndarray, q: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact distances of segments p[e] q[e] (E, 2) to a convex polygon (M, 2); 0 where they touch it."""
    a = poly[None, :, :]  # (1, M, 2) polygon edges a -> b
    b = np.roll(poly, -1, axis=0)[None]
    P, Q = p[:, None, :], q[:, None, :]  # (E, 1, 2)
    d = np.minimum(_point_segment_distance(P, a, b), _point_segment_distance(Q, a, b)).min(1)  # endpoints -> edges
    d = np.minimum(d, _point_segment_distance(a, P, Q).min(1))  # polygon vertices -> segment
    # proper crossing of PQ with an edge, or PQ entirely inside the polygon
    d1, d2 = _cross(Q - P, a - P), _cross(Q - P, b - P)
    d3, d4 = _cross(b - a, P - a), _cross(b - a, Q - a)
    crosses = ((d1 * d2) < 0) & ((d3 * d4) < 0)
    inside = (d3 >= 0).all(1) | (d3 <= 0).all(1)  # P inside (edge orientation consistent)
    return np.where(crosses.any(1) | inside, 0.0, d)


@dataclass
class ExpertConfig:
    rho: float = 60.0  # px per radian when weighing angle error against position error
    pos_tol: float = 6.0  # stop when the block's cog is this close (px) ...
    angle_tol: float = 0.06  # ... and its angle this close (rad)
    max_push: float = 25.0  # px of pusher travel per step
    # px the PD target may lie from the agent, i.e. how fast it moves (100 = the action bound, no limit).
    max_step: float = 100.0
    hysteresis: float = 1.6  # switch contact only if another reduces the error this many times more
    approach_gap: float = 4.0  # px between disc and face at the pre-contact point
    ring_radius: float = 105.0  # waypoint ring around the cog (T reaches ~77 px from it)
    clearance: float = AGENT_RADIUS + 1.0
    # Pre-contact points and targets stay within these coordinates: the kinematic disc may overlap the walls
    # (it does not collide with them), which lets it push a block away from a wall.
    arena: tuple[float, float] = (10.0, 502.0)
    stall_steps: int = 4  # pushes in a row that leave the block still (e.g. into a wall) ...
    ban_steps: int = 25  # ... ban that contact for this many steps


class ScriptedPushExpert:
    """State-feedback pushing policy. ``act(state, goal_pose)`` -> relative action in [-1, 1]^2.

    ``goal_pose`` = (block x, block y, block angle). ``done(state, goal_pose)`` says the block is there.
    """

    def __init__(self, cfg: Optional[ExpertConfig] = None, rng: Optional[np.random.Generator] = None):
        self.cfg = cfg or ExpertConfig()
        self.rng = rng or np.random.default_rng(0)
        self.points, self.normals = contact_candidates()
        self.reset()

    def reset(self) -> None:
        self.current: Optional[int] = None
        self._pushing = False
        self._last_pose: Optional[np.ndarray] = None
        self._stalled = 0
        self._banned = np.zeros(len(self.points), dtype=np.int64)  # steps left per contact

    def done(self, state, goal_pose) -> bool:
        s, g = np.asarray(state, np.float64), np.asarray(goal_pose, np.float64)
        pos_err = np.linalg.norm(block_cog(g) - block_cog(s[2:5]))
        return bool(pos_err < self.cfg.pos_tol and angle_error(g[2], s[4]) < self.cfg.angle_tol)

    # ------------------------------------------------------------------ contact choice

    def _world_contacts(self, pose: np.ndarray):
        c, s = math.cos(pose[2]), math.sin(pose[2])
        rot = np.array([[c, -s], [s, c]])
        pts = self.points @ rot.T + pose[:2]
        normals = self.normals @ rot.T
        return pts, normals

    def _choose(self, pose: np.ndarray, goal: np.ndarray):
        cfg = self.cfg
        pts, normals = self._world_contacts(pose)
        cog = block_cog(pose)
        err = np.array([*(block_cog(goal) - cog), cfg.rho * wrap_angle(goal[2] - pose[2])])
        r = pts - cog
        torque = r[:, 0] * normals[:, 1] - r[:, 1] * normals[:, 0]  # r x n (y down, angle grows clockwise on screen)
        k = 1.0 + torque**2 / BLOCK_MOMENT
        # Pose change per px of pusher travel, in the weighted error space: (n / k, rho * torque / I / k).
        u = np.concatenate([normals / k[:, None], (cfg.rho * torque / BLOCK_MOMENT / k)[:, None]], axis=1)
        proj = u @ err
        travel = np.clip(proj / (u * u).sum(1), 0, None)  # least-squares push distance, pushes only
        gain = np.where(proj > 0, proj**2 / (u * u).sum(1), 0.0)  # squared error removed
        # The disc passes through walls but the block does not: skip contacts whose pre-contact point is
        # outside the arena (the block is against a wall on that side).
        pre = pts - normals * (AGENT_RADIUS + cfg.approach_gap)
        lo, hi = cfg.arena
        gain = np.where(((pre >= lo) & (pre <= hi)).all(1) & (self._banned == 0), gain, 0.0)
        best = int(np.argmax(gain))
        if self.current is not None and gain[self.current] > 0 and gain[best] < cfg.hysteresis * gain[self.current]:
            best = self.current
        self.current = best
        return pts[best], normals[best], float(travel[best])

    # ------------------------------------------------------------------ motion

    def _path_target(self, agent: np.ndarray, goal_pt: np.ndarray, pose: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Next waypoint on a collision-free path from the agent to ``goal_pt`` around the block."""
        cfg = self.cfg
        polys = block_polygons(*pose)
        cog = block_cog(pose)
        staging = goal_pt - normal * 30.0
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        ring = cog + cfg.ring_radius * np.stack([np.cos(angles), np.sin(angles)], 1)
        nodes = np.vstack([agent, goal_pt, staging, ring])  # 0 = agent, 1 = goal, 2 = staging, 3.. = ring
        n = len(nodes)
        i, j = np.triu_indices(n, 1)
        dist_to_block = np.min([segments_polygon_distance(nodes[i], nodes[j], poly) for poly in polys], axis=0)
        # From the agent itself a slightly smaller clearance: a disc resting on the block may leave it.
        clearance = np.where(i == 0, AGENT_RADIUS - 1.0, cfg.clearance)
        free = dist_to_block >= clearance
        free[(i == 1) & (j == 2)] = True  # the final approach runs along the face normal by construction
        if free[(i == 0) & (j == 1)].all():
            return goal_pt
        length = np.linalg.norm(nodes[i] - nodes[j], axis=1)
        weight = np.full((n, n), np.inf)
        weight[i[free], j[free]] = length[free]
        weight[j[free], i[free]] = length[free]
        prev = _dijkstra(weight, 0, 1)
        if prev is None:  # no clear path from here: back away from the block and try again next step
            away = agent - cog
            return agent + 30.0 * away / (np.linalg.norm(away) + 1e-9)
        k = 1
        while prev[k] != 0:
            k = prev[k]
        return nodes[k]

    def _watch_for_stalls(self, pose: np.ndarray) -> None:
        """Ban a contact whose pushes stopped moving the block (it is pinned against a wall on that side)."""
        self._banned = np.maximum(self._banned - 1, 0)
        if self._pushing and self._last_pose is not None:
            moved = np.hypot(*(pose[:2] - self._last_pose[:2])) + 50.0 * abs(
                float(wrap_angle(pose[2] - self._last_pose[2]))
            )
            self._stalled = self._stalled + 1 if moved < 0.3 else 0
            if self._stalled >= self.cfg.stall_steps and self.current is not None:
                self._banned[self.current] = self.cfg.ban_steps
                self.current, self._stalled = None, 0
        self._last_pose = pose.copy()

    def act(self, state, goal_pose) -> np.ndarray:
        cfg = self.cfg
        s, goal = np.asarray(state, np.float64), np.asarray(goal_pose, np.float64)
        agent, pose = s[:2], s[2:5]
        self._watch_for_stalls(pose)
        contact, normal, travel = self._choose(pose, goal)
        pre = contact - normal * (AGENT_RADIUS + cfg.approach_gap)
        rel = agent - contact
        lateral = abs(rel[0] * normal[1] - rel[1] * normal[0])
        behind = -(rel @ normal)  # distance of the disc centre outside the face, along the normal
        self._pushing = lateral < 4.0 and AGENT_RADIUS - 3.0 < behind < AGENT_RADIUS + 12.0
        if self._pushing:
            target = contact + normal * (min(travel, cfg.max_push) - AGENT_RADIUS)
        else:
            target = self._path_target(agent, pre, pose, normal)
        target = np.clip(target, *cfg.arena)
        offset = target - agent
        length = float(np.hypot(*offset))
        if length > cfg.max_step:
            offset = offset * (cfg.max_step / length)
        return np.clip(offset / ACTION_SCALE, -1.0, 1.0)


def _dijkstra(weight: np.ndarray, source: int, target: int) -> Optional[list[int]]:
    """Predecessor list of a shortest path on a dense weight matrix (inf = no edge), or None if unreachable."""
    n = len(weight)
    dist = [math.inf] * n
    prev = [-1] * n
    dist[source] = 0.0
    heap = [(0.0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if u == target:
            return prev
        if d > dist[u]:
            continue
        for v in np.flatnonzero(np.isfinite(weight[u])):
            nd = d + weight[u, v]
            if nd < dist[v]:
                dist[v], prev[v] = nd, u
                heapq.heappush(heap, (nd, int(v)))
    return None


class RandomExplorer:
    """stable-worldmodel's WeakPolicy: uniform relative actions, PD targets kept within +-dist px of the block."""

    def __init__(self, rng: np.random.Generator, dist_constraint: float = 100.0):
        self.rng = rng
        self.dist = dist_constraint

    def reset(self) -> None:
        pass

    def act(self, state, goal_pose=None) -> np.ndarray:
        s = np.asarray(state, np.float64)
        agent, block = s[:2], s[2:4]
        target = agent + self.rng.uniform(-1, 1, 2) * ACTION_SCALE
        target = np.clip(target, block - self.dist, block + self.dist)
        return np.clip((target - agent) / ACTION_SCALE, -1.0, 1.0)
