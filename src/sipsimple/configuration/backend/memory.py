"""A configuration backend that keeps the data in memory (tests, throwaway clients)."""

from __future__ import annotations

import copy
import threading
from typing import Any

__all__ = ["MemoryBackend"]


class MemoryBackend:
    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = copy.deepcopy(data) if data is not None else {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._data)

    def save(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._data = copy.deepcopy(data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
