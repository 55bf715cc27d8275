"""Running generations by task id, so a stop request can find the one it names (and check who owns it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptd.engine.generation import Generation

__all__ = ["TaskRegistry"]


class TaskRegistry:
    def __init__(self) -> None:
        self._running: dict[str, Generation] = {}

    def add(self, generation: Generation) -> None:
        self._running[generation.request.task_id] = generation

    def remove(self, generation: Generation) -> None:
        self._running.pop(generation.request.task_id, None)

    def all(self) -> list[Generation]:
        return list(self._running.values())

    def stop(self, task_id: str, *, project: str, end_user_id: str | None) -> bool:
        """Stop the task if it is running, belongs to `project` and was started by `end_user_id`."""
        generation = self._running.get(task_id)
        if generation is None:
            return False
        req = generation.request
        if req.project != project or req.end_user_id != end_user_id:
            return False
        generation.stop()
        return True
