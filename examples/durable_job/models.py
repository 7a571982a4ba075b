"""The schema of the durable-job example (found next to job.yaml)."""

from pydantic import BaseModel, Field


class Reading(BaseModel):
    sensor: str = Field(pattern=r"^S\d{3}$")
    value: float = Field(ge=-50, le=150)
