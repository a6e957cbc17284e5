"""Key names, in one place, so the namespace documented in ``backend.store`` stays true."""

from __future__ import annotations


class Keys:
    """Builds every application key under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        """``prefix`` + parts joined by ':'."""
        return self.prefix + ":".join(parts)

    def pattern(self, *parts: str) -> str:
        """A SCAN pattern under the prefix (parts may contain ``*``)."""
        return self.prefix + ":".join(parts)
