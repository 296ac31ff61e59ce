"""Self-supervised model family table (being written)."""

from __future__ import annotations

from ._zoo import ZooModel

MODELS: dict[str, ZooModel] = {}
