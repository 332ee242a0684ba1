"""Where Graphviz put things in an SVG: text boxes, edge curves and node outlines, and the
label collisions among them (a label struck by an edge, or written on a node).

Graphviz's SVG gives each text's anchor point, baseline and font size, each edge as a
path of cubic Bezier pieces, and each node as a polygon, path or ellipse. A text's
extent is estimated from Helvetica's average advance (0.55 em; digits and lower case
are 0.50-0.56 em, so long labels of letters and digits are slightly overestimated),
from 0.75 em above the baseline to 0.2 em below; boxes are shrunk by ``SLACK`` points
so that an edge grazing a label's corner is not counted.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

SVG = "{http://www.w3.org/2000/svg}"
EM_WIDTH = 0.55
SLACK = 1.5  # points: what an edge may graze of a label's estimated box


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def contains(self, x: float, y: float) -> bool:
        return self.x0 < x < self.x1 and self.y0 < y < self.y1

    def overlaps(self, other: "Box") -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class Text:
    owner: str  # "node", "edge" or "cluster" and its <title>
    text: str
    box: Box


@dataclass(frozen=True)
class Layout:
    texts: list[Text]
    edges: dict[str, list[tuple[float, float]]]  # edge title -> points along its curve
    nodes: dict[str, Box]  # node title -> outline's bounding box


def _text_box(elem: ET.Element) -> Box:
    x, y = float(elem.get("x")), float(elem.get("y"))
    size = float(elem.get("font-size", "14"))
    text = elem.text or ""
    width = EM_WIDTH * size * len(text)
    anchor = elem.get("text-anchor", "start")
    left = x - width / 2 if anchor == "middle" else x - width if anchor == "end" else x
    lead, trail = len(text) - len(text.lstrip()), len(text) - len(text.rstrip())
    left, width = left + EM_WIDTH * size * lead, width - EM_WIDTH * size * (lead + trail)  # spaces pad
    return Box(left + SLACK, y - 0.75 * size + SLACK, left + width - SLACK, y + 0.2 * size - SLACK)


def _bezier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points every ~1 pt along a chain of cubic pieces p0 c1 c2 p1 c1 c2 p2 ..."""
    out = [points[0]]
    for i in range(0, len(points) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points[i:i + 4]
        steps = max(2, int(abs(x3 - x0) + abs(y3 - y0) + abs(x1 - x0) + abs(y2 - y3)))
        for k in range(1, steps + 1):
            t = k / steps
            a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
            out.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3))
    return out


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def _pairs(values: list[float]) -> list[tuple[float, float]]:
    return list(zip(values[0::2], values[1::2]))


def _outline(group: ET.Element) -> Box | None:
    points: list[tuple[float, float]] = []
    for elem in group.iter():
        tag = elem.tag.removeprefix(SVG)
        if tag == "polygon":
            points += _pairs(_numbers(elem.get("points", "")))
        elif tag == "path":
            points += _pairs(_numbers(elem.get("d", "")))
        elif tag == "ellipse":
            cx, cy, rx, ry = (float(elem.get(k)) for k in ("cx", "cy", "rx", "ry"))
            points += [(cx - rx, cy - ry), (cx + rx, cy + ry)]
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return Box(min(xs), min(ys), max(xs), max(ys))


def parse(svg: str | bytes) -> Layout:
    """The texts, edge curves and node outlines of Graphviz's SVG (one coordinate frame:
    Graphviz writes every element inside the one transformed graph group)."""
    root = ET.fromstring(svg)
    texts: list[Text] = []
    edges: dict[str, list[tuple[float, float]]] = {}
    nodes: dict[str, Box] = {}
    for group in root.iter(f"{SVG}g"):
        kind = group.get("class")
        if kind not in ("node", "edge", "cluster"):
            continue
        title = group.findtext(f"{SVG}title") or ""
        owner = f"{kind} {title}"
        for elem in group.iter(f"{SVG}text"):
            if (elem.text or "").strip():
                texts.append(Text(owner, elem.text, _text_box(elem)))
        if kind == "edge":
            path = group.find(f".//{SVG}path")
            if path is not None:
                edges[owner] = _bezier(_pairs(_numbers(path.get("d", ""))))
        elif kind == "node":
            box = _outline(group)
            if box is not None and not title.startswith("legend_"):
                nodes[owner] = box
    return Layout(texts, edges, nodes)


def collisions(layout: Layout) -> list[str]:
    """Every label struck by an edge's curve, and every edge or frame label on a node."""
    found = []
    for text in layout.texts:
        for edge, points in layout.edges.items():
            if any(text.box.contains(x, y) for x, y in points):
                found.append(f"{text.owner} label {text.text!r} struck by {edge}")
                break
        if text.owner.startswith("node "):
            continue  # a node's own text is on its node by design
        for node, box in layout.nodes.items():
            if text.box.overlaps(box):
                found.append(f"{text.owner} label {text.text!r} on {node}")
                break
    return found
