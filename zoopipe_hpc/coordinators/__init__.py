"""Coordinators: lifecycle hooks around a run; the run's commit is one of them."""

from .base import BaseCoordinator, CompositeCoordinator
from .file_merge import FileMergeCoordinator
from .iceberg import IcebergCoordinator

__all__ = [
    "BaseCoordinator",
    "CompositeCoordinator",
    "FileMergeCoordinator",
    "IcebergCoordinator",
]
