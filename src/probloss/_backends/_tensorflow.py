"""TensorFlow fast paths (imported on the first call with TensorFlow tensors)."""

from __future__ import annotations
