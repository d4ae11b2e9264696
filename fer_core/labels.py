"""The six basic emotions, in the one order used everywhere (index -> name)."""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("happiness", "surprise", "sadness", "anger", "disgust", "fear")
NUM_CLASSES = len(EMOTIONS)


def emotion_index(name: str) -> int:
    """Index of an emotion name (case-insensitive); raises ValueError naming the choices."""
    key = name.strip().lower()
    if key not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; choose from {', '.join(EMOTIONS)}")
    return EMOTIONS.index(key)
