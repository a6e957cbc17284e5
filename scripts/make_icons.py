#!/usr/bin/env python3
"""Draw the add-in's icons (taskpane_static/img/icon-{16,32,64,80,128}.png) with the standard library.

A blue rounded square with a white two-arrow "sync" mark. Pure Python (zlib + struct), so it needs
no imaging library; the output is byte-for-byte reproducible, so re-running it leaves git clean.

    python3 scripts/make_icons.py            # writes the five PNGs
    python3 scripts/make_icons.py --check    # exits 1 if a committed PNG differs from what it draws

The sizes are the ones an Outlook XML manifest asks for: 16, 32 and 80 px for ribbon buttons
(bt:Image size=...), 64 px for IconUrl and 128 px for HighResolutionIconUrl.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import zlib

SIZES = (16, 32, 64, 80, 128)
OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "taskpane_static", "img")

BLUE = (15, 108, 189)  # Fluent "brand" blue (#0F6CBD): reads as Office, high contrast with white
WHITE = (255, 255, 255)
CORNER = 0.22  # corner radius, as a fraction of the side
RING_RADIUS = 0.27  # centre line of the arrows' arcs
# (ring width, arrowhead half-width across the ring, arrowhead length along it): small icons get
# bolder strokes so the arrows still read at 16 px.
STROKES = {"small": (0.15, 0.18, 0.19), "large": (0.105, 0.13, 0.15)}
SMALL_MAX = 32
# Each arc runs clockwise (screen coordinates, y down) from start to end degrees; its arrowhead
# sits at the end. Two arcs with gaps between them make the familiar "sync" mark.
ARCS = ((-165.0, -25.0), (15.0, 155.0))
SUPERSAMPLE = 8  # samples per pixel side: smooth edges even at 16 px

Point = tuple[float, float]


def _in_rounded_square(x: float, y: float) -> bool:
    """Is (x, y) in the unit square with rounded corners?"""
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        return False
    cx = min(max(x, CORNER), 1.0 - CORNER)
    cy = min(max(y, CORNER), 1.0 - CORNER)
    return (x - cx) ** 2 + (y - cy) ** 2 <= CORNER**2


def _angle_in(angle: float, start: float, end: float) -> bool:
    """Is ``angle`` (degrees) on the clockwise arc from ``start`` to ``end``?"""
    span = (end - start) % 360.0
    return (angle - start) % 360.0 <= span


def _in_triangle(p: Point, a: Point, b: Point, c: Point) -> bool:
    """Is ``p`` inside triangle abc (either winding)?"""
    def cross(o: Point, u: Point, v: Point) -> float:
        return (u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0])

    d1, d2, d3 = cross(a, b, p), cross(b, c, p), cross(c, a, p)
    has_neg = d1 < 0 or d2 < 0 or d3 < 0
    has_pos = d1 > 0 or d2 > 0 or d3 > 0
    return not (has_neg and has_pos)


def _arrowheads(half_width: float, length: float) -> list[tuple[Point, Point, Point]]:
    """One triangle per arc, at its end, pointing along the clockwise tangent."""
    heads = []
    for _start, end in ARCS:
        t = math.radians(end)
        base = (0.5 + RING_RADIUS * math.cos(t), 0.5 + RING_RADIUS * math.sin(t))
        radial = (math.cos(t), math.sin(t))
        tangent = (-math.sin(t), math.cos(t))  # clockwise on screen (y grows downwards)
        tip = (base[0] + tangent[0] * length, base[1] + tangent[1] * length)
        outer = (base[0] + radial[0] * half_width, base[1] + radial[1] * half_width)
        inner = (base[0] - radial[0] * half_width, base[1] - radial[1] * half_width)
        heads.append((tip, outer, inner))
    return heads


def _in_mark(x: float, y: float, width: float, heads: list[tuple[Point, Point, Point]]) -> bool:
    """Is (x, y) on the white sync mark?"""
    dx, dy = x - 0.5, y - 0.5
    r = math.hypot(dx, dy)
    if abs(r - RING_RADIUS) <= width / 2:
        angle = math.degrees(math.atan2(dy, dx))
        if any(_angle_in(angle, start, end) for start, end in ARCS):
            return True
    return any(_in_triangle((x, y), *head) for head in heads)


def draw(size: int) -> bytes:
    """RGBA rows of the icon at ``size`` px (straight alpha)."""
    width, half_width, length = STROKES["small" if size <= SMALL_MAX else "large"]
    heads = _arrowheads(half_width, length)
    rows = bytearray()
    n = SUPERSAMPLE
    for py in range(size):
        rows.append(0)  # PNG filter type 0 (None) for this row
        for px in range(size):
            covered = 0
            white = 0
            for sy in range(n):
                y = (py + (sy + 0.5) / n) / size
                for sx in range(n):
                    x = (px + (sx + 0.5) / n) / size
                    if _in_rounded_square(x, y):
                        covered += 1
                        if _in_mark(x, y, width, heads):
                            white += 1
            if covered == 0:
                rows += bytes((0, 0, 0, 0))
                continue
            # Colour is the mix over covered samples only (straight alpha, no dark fringe).
            w = white / covered
            rgb = (round(BLUE[i] * (1 - w) + WHITE[i] * w) for i in range(3))
            rows += bytes((*rgb, round(255 * covered / (n * n))))
    return bytes(rows)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(size: int) -> bytes:
    """A complete PNG file (8-bit RGBA) of the icon at ``size`` px."""
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(draw(size), 9)) + _chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    """Write (or, with --check, compare) the five icons."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--out-dir", default=OUT_DIR)
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    stale = []
    for size in SIZES:
        path = os.path.join(args.out_dir, f"icon-{size}.png")
        data = png(size)
        if args.check:
            try:
                with open(path, "rb") as fh:
                    if fh.read() != data:
                        stale.append(path)
            except OSError:
                stale.append(path)
            continue
        with open(path, "wb") as fh:
            fh.write(data)
        print(f"wrote {path} ({len(data)} bytes)")
    for path in stale:
        print(f"differs: {path}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
