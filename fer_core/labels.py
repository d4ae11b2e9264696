"""Class names, in the one order used everywhere (index -> name).

The six basic emotions keep indices 0-5 in every model and dataset; a model that also knows `neutral` has it as
index 6 (`CLASSES_7`). A checkpoint's own class list (`ModelSpec.classes`) is what the library, the CLI and the
pages show; these constants are the two lists a model can have.
"""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("happiness", "surprise", "sadness", "anger", "disgust", "fear")
NEUTRAL = "neutral"
CLASSES_7: tuple[str, ...] = EMOTIONS + (NEUTRAL,)
NUM_CLASSES = len(EMOTIONS)
KNOWN_CLASS_LISTS: tuple[tuple[str, ...], ...] = (EMOTIONS, CLASSES_7)


def emotion_index(name: str, classes: tuple[str, ...] = CLASSES_7) -> int:
    """Index of a class name (case-insensitive) in `classes` (the six emotions and neutral by default); raises
    ValueError naming the choices."""
    key = name.strip().lower()
    if key not in classes:
        raise ValueError(f"unknown class {name!r}; choose from {', '.join(classes)}")
    return classes.index(key)


def class_list(n: int) -> tuple[str, ...]:
    """The class names of a model with `n` outputs: the six emotions, or the six and neutral."""
    for classes in KNOWN_CLASS_LISTS:
        if len(classes) == n:
            return classes
    raise ValueError(f"no class list has {n} classes (six emotions, or six and neutral)")
