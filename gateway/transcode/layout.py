"""Layouts of the composed picture that room systems (legs that take one video stream) receive.

Protocol-free. `Layout` names the arrangement a room uses; the geometry of each arrangement (which
tile goes where at a given output size) lives beside it.
"""

from __future__ import annotations

import enum


class Layout(enum.StrEnum):
    """SPEAKER: the active speaker (or the spotlighted participant) large, a strip of the others
    below. GRID: everyone in equal tiles."""

    SPEAKER = "speaker"
    GRID = "grid"
