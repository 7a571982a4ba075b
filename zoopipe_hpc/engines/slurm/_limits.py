"""The limits a Slurm site reports in ``scontrol show config``, read once per engine (private).

``scontrol show config`` prints one ``Name = value`` line per setting (``MaxArraySize = 1001``,
``MaxJobCount = 10000``, ``MinJobAge = 300 sec``...). :func:`parse_site_limits` reads the ones
the engine plans with; a setting the output does not have keeps Slurm's own default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError

__all__ = ["DEFAULT_LIMITS", "SiteLimits", "parse_site_limits"]

_LINE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_\[\]]*)\s*=\s*(?P<value>.*?)\s*$")
_NUMBER = re.compile(r"^(?P<number>\d+)(?:\s+sec)?$")


@dataclass(frozen=True)
class SiteLimits:
    """What the controller allows: ``max_array_size`` (array task ids are 0..this-1),
    ``max_job_count`` (jobs the controller keeps at once, every array task counted as one),
    ``min_job_age`` (seconds a finished job stays known to the controller)."""

    max_array_size: int = 1001
    max_job_count: int = 10000
    min_job_age: int = 300
    #: The controller's per-user RPC rate limit (``SlurmctldParameters=rl_enable``, Slurm
    #: 23.02+): requests a minute, sustained, and the bucket (burst); None where it is off.
    rate_limit_per_minute: float | None = None
    rate_limit_bucket: int | None = None


#: Slurm's defaults (slurm.conf(5)), for a site whose output lacks a setting.
DEFAULT_LIMITS = SiteLimits()

_FIELDS = {
    "MaxArraySize": "max_array_size",
    "MaxJobCount": "max_job_count",
    "MinJobAge": "min_job_age",
}


#: slurm.conf(5)'s defaults of the rate limiter once ``rl_enable`` is set.
_RL_DEFAULTS = {"rl_bucket_size": 30, "rl_refill_rate": 2, "rl_refill_period": 1}


def _rate_limit(value: str, where: str) -> dict[str, float | int]:
    """``SlurmctldParameters``' rate-limit options, or nothing if ``rl_enable`` is not set."""
    options = dict(
        (item.partition("=")[0].strip(), item.partition("=")[2].strip())
        for item in value.split(",")
        if item.strip()
    )
    if "rl_enable" not in options:
        return {}
    numbers: dict[str, int] = {}
    for name, default in _RL_DEFAULTS.items():
        raw = options.get(name) or str(default)
        if not raw.isdigit() or int(raw) == 0:
            raise ConfigurationError(f"{where}: {name} is {raw!r}, not a whole number above 0")
        numbers[name] = int(raw)
    per_minute = numbers["rl_refill_rate"] * 60.0 / numbers["rl_refill_period"]
    return {"rate_limit_per_minute": per_minute, "rate_limit_bucket": numbers["rl_bucket_size"]}


def parse_site_limits(text: str, source: str = "scontrol show config") -> SiteLimits:
    """The :class:`SiteLimits` in ``scontrol show config``'s output ``text``.

    A setting that is there but not a whole number (of seconds, for ``MinJobAge``) is an error
    naming the line: planning with a guess could submit more than the site allows.
    """
    found: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line.strip())
        if match is not None and match["name"] == "SlurmctldParameters":
            found.update(_rate_limit(match["value"], f"{source}, line {number}"))
            continue
        if match is None or match["name"] not in _FIELDS:
            continue
        value = _NUMBER.match(match["value"])
        if value is None:
            raise ConfigurationError(
                f"{source}, line {number}: {match['name']} is {match['value']!r}, "
                f"not a whole number"
            )
        found[_FIELDS[match["name"]]] = int(value["number"])
    return SiteLimits(**found)
