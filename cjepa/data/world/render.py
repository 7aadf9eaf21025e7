"""Numpy renderer for world scenes: RGB frames and per-pixel instance masks from the same coverage.

Objects are drawn far to near (painter's algorithm along the view depth), each as its exact silhouette under
the oblique camera: a sphere is a disc with smooth shading, a cube shows its lit top and the side faces turned
to the viewer, a cylinder shows a flat elliptical top over a curved side. Metal is dark with a bright
specular highlight; rubber is matte. There is no antialiasing: a pixel belongs to exactly one object or to
the floor, and the mask writes the object's id (object_id + 1) into exactly the pixels whose colour that
object set, so masks match the rendered pixels including occlusion.
"""

from __future__ import annotations

import math

import numpy as np

from cjepa.data.world.scene import COLOUR_RGB, OBJECT_RADIUS, Camera, ObjectSpec

_LIGHT = np.array([-0.45, -0.55, 0.70])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
# material -> (ambient, diffuse, specular strength, shininess)
_MATERIAL_SHADING = {"rubber": (0.40, 0.62, 0.06, 8.0), "metal": (0.22, 0.45, 0.95, 40.0)}
_FLOOR_RGB = np.array([176.0, 174.0, 168.0])


class Renderer:
    """Renders frames of one camera; precomputes the floor and the lighting vectors once."""

    def __init__(self, camera: Camera):
        self.cam = camera
        e = math.radians(camera.elevation_deg)
        self.view = np.array([0.0, -math.cos(e), math.sin(e)])  # towards the viewer
        self.up = np.array([0.0, math.sin(e), math.cos(e)])  # screen up, in world coordinates
        half = _LIGHT + self.view
        self.half = half / np.linalg.norm(half)
        H, W = camera.height, camera.width
        rows = (np.arange(H) + 0.5)[:, None] / H
        cols = (np.arange(W) + 0.5)[None, :] / W
        # soft light falloff: brighter far away (top) and towards the light (left)
        shade = 0.88 + 0.10 * (1 - rows) + 0.05 * (1 - cols) - 0.06 * ((cols - 0.5) ** 2 + (rows - 0.5) ** 2)
        self.floor = np.clip(_FLOOR_RGB[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)

    def render(self, specs: list[ObjectSpec], position: np.ndarray, angle: np.ndarray,
               visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame: positions (N, 2), angles (N,), which objects to draw (N,) -> (rgb (H, W, 3) uint8, ids (H, W)
        uint8)."""
        rgb = self.floor.copy()
        ids = np.zeros(rgb.shape[:2], np.uint8)
        order = [s for s in specs if visible[s.object_id]]
        order.sort(key=lambda s: -position[s.object_id, 1])  # far (large y) first
        for s in order:
            x, y = position[s.object_id]
            draw = {"sphere": self._sphere, "cube": self._cube, "cylinder": self._cylinder}[s.shape]
            draw(rgb, ids, s, float(x), float(y), float(angle[s.object_id]))
        return rgb, ids

    # -- helpers
    def _window(self, u0: float, u1: float, v0: float, v1: float):
        """Integer pixel window covering [u0, u1] x [v0, v1], clipped to the image; None when empty."""
        H, W = self.cam.height, self.cam.width
        c0, c1 = max(int(math.floor(u0)), 0), min(int(math.ceil(u1)), W)
        r0, r1 = max(int(math.floor(v0)), 0), min(int(math.ceil(v1)), H)
        if c0 >= c1 or r0 >= r1:
            return None
        uu, vv = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
        return (slice(r0, r1), slice(c0, c1)), uu, vv

    def _shade(self, spec: ObjectSpec, normals: np.ndarray, extra: np.ndarray | float = 0.0) -> np.ndarray:
        """Normals (..., 3) -> RGB (..., 3) floats: ambient + diffuse colour + white specular highlight."""
        amb, dif, spec_k, shin = _MATERIAL_SHADING[spec.material]
        lam = np.clip(normals @ _LIGHT, 0.0, 1.0)
        hl = np.clip(normals @ self.half, 0.0, 1.0) ** shin
        base = np.array(COLOUR_RGB[spec.colour], float)
        out = base * (amb + dif * lam + extra)[..., None] + 255.0 * spec_k * hl[..., None]
        return np.clip(out, 0, 255)

    def _paint(self, rgb, ids, window, cover: np.ndarray, colours: np.ndarray, spec: ObjectSpec) -> None:
        """Write colours and the object's id into the covered pixels of the window (the same pixels for both)."""
        np.copyto(rgb[window], colours.astype(np.uint8, copy=False), where=cover[..., None])
        np.copyto(ids[window], np.uint8(spec.object_id + 1), where=cover)

    # -- shapes
    def _sphere(self, rgb, ids, spec, x, y, _angle):
        R = OBJECT_RADIUS * self.cam.scale
        u0, v0 = self.cam.project(x, y, OBJECT_RADIUS)
        win = self._window(u0 - R, u0 + R, v0 - R, v0 + R)
        if win is None:
            return
        window, uu, vv = win
        du, dv = (uu - u0) / R, (vv - v0) / R
        rr = du * du + dv * dv
        cover = rr <= 1.0
        dz = np.sqrt(np.clip(1.0 - rr, 0.0, 1.0))
        normals = du[..., None] * np.array([1.0, 0, 0]) + (-dv)[..., None] * self.up + dz[..., None] * self.view
        self._paint(rgb, ids, window, cover, self._shade(spec, normals), spec)

    def _cube(self, rgb, ids, spec, x, y, angle):
        r = OBJECT_RADIUS
        c, s = math.cos(angle), math.sin(angle)
        corners = np.array([[x + r * (c * a - s * b), y + r * (s * a + c * b)] for a,
                            b in ((1, 1), (-1, 1), (-1, -1), (1, -1))])
        u_all, v_all = [], []
        for z in (0.0, 2 * r):
            u, v = self.cam.project(corners[:, 0], corners[:, 1], z)
            u_all.append(u)
            v_all.append(v)
        u_all, v_all = np.stack(u_all), np.stack(v_all)  # (2 levels, 4 corners)
        win = self._window(u_all.min(), u_all.max(), v_all.min(), v_all.max())
        if win is None:
            return
        window, uu, vv = win
        face = np.full(uu.shape, -1, np.int8)  # which face covers each pixel; -1 = none
        palette = []
        normals = []
        quads = []
        for k in range(4):  # side face between corners k and k+1
            k2 = (k + 1) % 4
            mid = (corners[k] + corners[k2]) / 2 - (x, y)
            n = np.array([mid[0], mid[1], 0.0]) / r
            if n @ self.view <= 1e-9:
                continue  # faces away from the viewer
            quads.append([(u_all[0, k], v_all[0, k]), (u_all[0, k2], v_all[0, k2]), (u_all[1, k2], v_all[1, k2]),
                          (u_all[1, k], v_all[1, k])])
            normals.append(n)
        quads.append([(u_all[1, k], v_all[1, k]) for k in range(4)])  # the top, drawn last
        normals.append(np.array([0.0, 0.0, 1.0]))
        for j, quad in enumerate(quads):
            face[_in_convex(uu, vv, quad)] = j
        palette = self._shade(spec, np.stack(normals)).astype(np.uint8)  # flat shading: one colour per face
        self._paint(rgb, ids, window, face >= 0, palette[np.maximum(face, 0)], spec)

    def _cylinder(self, rgb, ids, spec, x, y, _angle):
        r = OBJECT_RADIUS
        A = r * self.cam.scale
        B = A * self.cam.sin_e
        u0, v_top = self.cam.project(x, y, 2 * r)
        _, v_bot = self.cam.project(x, y, 0.0)
        win = self._window(u0 - A, u0 + A, v_top - B, v_bot + B)
        if win is None:
            return
        window, uu, vv = win
        du = (uu - u0) / A
        in_cols = np.abs(du) <= 1.0
        top = in_cols & (du * du + ((vv - v_top) / B) ** 2 <= 1.0)
        bottom = in_cols & (du * du + ((vv - v_bot) / B) ** 2 <= 1.0)
        side = in_cols & ((vv >= v_top) & (vv <= v_bot) | bottom) & ~top
        cover = top | side
        side_n = np.stack([du, -np.sqrt(np.clip(1.0 - du * du, 0.0, 1.0)), np.zeros_like(du)], -1)
        colours = np.where(top[..., None], self._shade(spec, np.array([[0.0, 0.0, 1.0]]))[0], self._shade(spec, side_n))
        self._paint(rgb, ids, window, cover, colours, spec)


def _in_convex(uu: np.ndarray, vv: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    """Pixel centres inside a convex polygon (either winding)."""
    pos = np.ones(uu.shape, bool)
    neg = np.ones(uu.shape, bool)
    for i in range(len(poly)):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % len(poly)]
        cross = (x1 - x0) * (vv - y0) - (y1 - y0) * (uu - x0)
        pos &= cross >= 0
        neg &= cross <= 0
    return pos | neg
