"""The ``zoopipe-hpc`` command line: run, watch and steer durable jobs."""

from .main import main

__all__ = ["main"]
