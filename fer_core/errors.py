"""The library's own exceptions; the UI and CLI catch these, never a blanket Exception."""
from __future__ import annotations


class FerError(Exception):
    """Base class of every error fer_core raises on purpose."""


class UnreadableImage(FerError, ValueError):
    """The input is not a decodable image (wrong type, corrupt, truncated, empty)."""


class ImageTooLarge(UnreadableImage):
    """The image has more pixels than the configured limit."""


class NoFaceFound(FerError):
    """No face was detected in the image."""


class CheckpointError(FerError, ValueError):
    """A checkpoint file is missing, corrupt, or does not match its architecture."""


class UnreadableVideo(FerError, ValueError):
    """The input is not a video OpenCV can decode, or it breaks the size limits."""


class OutputError(FerError, OSError):
    """An output path cannot be written (not writable, a folder where a file is expected, ...)."""


class UsageError(FerError, ValueError):
    """Options that do not go together, or a name that is not one of the choices."""
