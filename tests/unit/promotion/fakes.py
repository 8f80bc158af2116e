"""An in-memory ModelRegistry with the same compare-and-swap contract as the real backends."""

from __future__ import annotations

import threading

from airflow_training_guard.promotion.registry import HistoryEntry, Observed, ProductionPointer


class MemoryRegistry:
    def __init__(self) -> None:
        self.pointers: dict[str, ProductionPointer] = {}
        self.entries: dict[str, list[HistoryEntry]] = {}
        self.lock = threading.Lock()
        self.interfere: list[ProductionPointer] = []  # swapped in just before our next CAS

    def read(self, model_name: str) -> Observed:
        with self.lock:
            pointer = self.pointers.get(model_name)
            return Observed(pointer=pointer, token=pointer.version if pointer else 0)

    def compare_and_swap(self, model_name: str, expected: Observed, new: ProductionPointer) -> bool:
        with self.lock:
            if self.interfere:
                self._write(model_name, self.interfere.pop(0))
            current = self.pointers.get(model_name)
            if (current.version if current else 0) != expected.token:
                return False
            self._write(model_name, new)
            return True

    def _write(self, model_name: str, new: ProductionPointer) -> None:
        replaced = self.pointers.get(model_name)
        self.pointers[model_name] = new
        self.entries.setdefault(model_name, []).append(HistoryEntry(new, replaced))

    def history(self, model_name: str) -> list[HistoryEntry]:
        with self.lock:
            return list(self.entries.get(model_name, []))
