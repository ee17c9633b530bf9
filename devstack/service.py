"""What every local server of the stack and the benchmarks is: started, stopped, and usable as
a with-block that does both."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class Service(ABC):
    @abstractmethod
    def start(self) -> Self:
        """Serves from here on; returns itself."""

    @abstractmethod
    def stop(self) -> None:
        """Stops serving; safe to call after a failed start."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
