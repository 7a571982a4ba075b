"""Coordinators: sharding the input, and committing or rolling back the outputs."""

from .base import BaseCoordinator, CompositeCoordinator
from .file_merge import FileMergeCoordinator, MergeTarget
from .iceberg import IcebergCoordinator

__all__ = [
    "BaseCoordinator",
    "CompositeCoordinator",
    "FileMergeCoordinator",
    "IcebergCoordinator",
    "MergeTarget",
]
