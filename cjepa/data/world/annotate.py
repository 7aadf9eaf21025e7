"""Facts about a simulated world video, and its annotation in CLEVRER's schema.

:class:`SceneFacts` derives what questions and annotations need from a trajectory: which objects are visible
(centre inside the picture) and moving (speed above :data:`MOVING_SPEED`) at each frame, the entrance/exit
events, and the collisions seen in the video (at least one of the two objects visible). Collisions after the
last shown frame (the simulation runs on) are kept apart as the future, for predictive questions.

The annotation has CLEVRER's fields (``object_property``, ``motion_trajectory``, ``collision``) with the same
meanings, so code written for CLEVRER annotations reads it, plus ``events`` (entrances and exits; CLEVRER
leaves them implicit), ``future_collision`` and ``world`` (camera, generator version, the scene's initial
conditions: enough to re-simulate the video).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cjepa.data.world.physics import Trajectory
from cjepa.data.world.scene import OBJECT_RADIUS, Camera, ObjectSpec

MOVING_SPEED = 0.1  # world units / s; slower counts as stationary


@dataclass
class Event:
    kind: str  # "in", "out" or "collision"
    frame: int
    objects: tuple[int, ...]  # one id for in/out, two (sorted) for a collision
    location: tuple[float, float] = (0.0, 0.0)

    def key(self) -> tuple:
        return (self.kind, self.objects, self.frame)


@dataclass
class SceneFacts:
    specs: list[ObjectSpec]
    traj: Trajectory  # shown frames + future
    camera: Camera
    shown_frames: int
    visible: np.ndarray = field(init=False)  # (F, N)
    moving: np.ndarray = field(init=False)  # (F, N)
    events: list[Event] = field(init=False)  # in/out/collision within the shown frames, time-ordered
    future_collisions: list[Event] = field(init=False)

    def __post_init__(self):
        tr, cam = self.traj, self.camera
        self.visible = tr.present & cam.in_view(tr.position[..., 0], tr.position[..., 1])
        self.moving = tr.present & (np.linalg.norm(tr.velocity, axis=-1) > MOVING_SPEED)
        events: list[Event] = []
        shown = self.visible[: self.shown_frames]
        for s in self.specs:
            i = s.object_id
            for t in range(1, self.shown_frames):
                if shown[t, i] and not shown[t - 1, i]:
                    events.append(Event("in", t, (i,), tuple(map(float, tr.position[t, i]))))
                elif shown[t - 1, i] and not shown[t, i]:
                    events.append(Event("out", t, (i,), tuple(map(float, tr.position[t, i]))))
        future = []
        for c in tr.collisions:
            f = min(c.frame, tr.num_frames - 1)
            if not (self.visible[f, c.a] or self.visible[f, c.b]):
                continue  # happened off screen: not part of the video's story
            ev = Event("collision", c.frame, (c.a, c.b), c.location)
            (events if c.frame < self.shown_frames else future).append(ev)
        order = {"in": 0, "collision": 1, "out": 2}
        self.events = sorted(events, key=lambda e: (e.frame, order[e.kind], e.objects))
        self.future_collisions = sorted(future, key=lambda e: (e.frame, e.objects))

    # -- queries used by question templates
    def collisions(self) -> list[Event]:
        return [e for e in self.events if e.kind == "collision"]

    def entering(self) -> list[int]:
        return sorted({e.objects[0] for e in self.events if e.kind == "in"})

    def ancestors(self, target: Event) -> list[Event]:
        """CLEVRER's causal trace: earlier entrances/collisions sharing an object with the target, transitively."""
        found: dict[tuple, Event] = {}
        frontier = [target]
        while frontier:
            e = frontier.pop()
            for c in self.events:
                if (
                    c.kind in ("in", "collision")
                    and c.frame < e.frame
                    and set(c.objects) & set(e.objects)
                    and c.key() not in found
                ):
                    found[c.key()] = c
                    frontier.append(c)
        return sorted(found.values(), key=lambda e: (e.frame, e.objects))


def visible_collision_pairs(traj: Trajectory, camera: Camera, stop: int) -> set[tuple[int, int]]:
    """Pairs that collide on screen (one of the two objects visible) before frame ``stop``: what a viewer sees."""
    vis = traj.present & camera.in_view(traj.position[..., 0], traj.position[..., 1])
    out = set()
    for c in traj.collisions:
        if c.frame < stop and (vis[c.frame, c.a] or vis[c.frame, c.b]):
            out.add((c.a, c.b))
    return out


def clevrer_annotation(facts: SceneFacts, *, scene_index: int, video_filename: str, world: dict) -> dict:
    """The per-video annotation in CLEVRER's schema (plus events, future collisions, and the world section)."""
    tr, T = facts.traj, facts.shown_frames
    r = OBJECT_RADIUS
    props = [{"object_id": s.object_id, "color": s.colour, "material": s.material, "shape": s.shape,
              "mask_id": s.object_id + 1}
             for s in facts.specs]
    motion = []
    for t in range(T):
        objs = []
        for s in facts.specs:
            i = s.object_id
            objs.append({
                "object_id": i,
                "location": [round(float(tr.position[t, i, 0]), 5), round(float(tr.position[t, i, 1]), 5), r],
                "orientation": [0.0, 0.0, round(float(tr.angle[t, i]), 5)],
                "velocity": [round(float(tr.velocity[t, i, 0]), 5), round(float(tr.velocity[t, i, 1]), 5), 0.0],
                "angular_velocity": [0.0, 0.0, round(float(tr.angular_velocity[t, i]), 5)],
                "inside_camera_view": bool(facts.visible[t, i]),
                "present": bool(tr.present[t, i]),
            })
        motion.append({"frame_id": t, "objects": objs})

    def coll(e: Event) -> dict:
        return {"object_ids": list(e.objects), "frame_id": e.frame,
                "location": [round(e.location[0], 5), round(e.location[1], 5), 0.0]}

    return {
        "scene_index": scene_index,
        "video_filename": video_filename,
        "object_property": props,
        "motion_trajectory": motion,
        "collision": [coll(e) for e in facts.collisions()],
        "events": [{"type": e.kind, "object_id": e.objects[0],
                    "frame_id": e.frame} for e in facts.events if e.kind != "collision"],
        "future_collision": [coll(e) for e in facts.future_collisions],
        "world": {**world, "moving_speed": MOVING_SPEED, "camera": facts.camera.to_json(),
                  "scene": [s.to_json() for s in facts.specs], "simulated_frames": tr.num_frames},
    }
