"""Engines: how a PipeManager's pipes are executed."""

from .base import BaseEngine, WorkerResult
from .multiprocess import MultiProcessEngine
from .zooparallel import ZooParallelPoolEngine

__all__ = ["BaseEngine", "WorkerResult", "MultiProcessEngine", "ZooParallelPoolEngine"]
