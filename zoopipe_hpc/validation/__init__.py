"""Validation: Arrow conversion, the columnar fast path, row-by-row pydantic validation, and the
executors that run it inside a worker."""

from .executors import BatchExecutor, MultiThreadExecutor, SingleThreadExecutor

__all__ = ["BatchExecutor", "SingleThreadExecutor", "MultiThreadExecutor"]
