"""Executors under ZooPipe's module name; they live in :mod:`zoopipe_hpc.validation`."""

from .validation.executors import BatchExecutor, MultiThreadExecutor, SingleThreadExecutor

__all__ = ["BatchExecutor", "SingleThreadExecutor", "MultiThreadExecutor"]
