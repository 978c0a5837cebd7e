"""Training steps: step N is training samples [N*global_batch, (N+1)*global_batch).

Steps count from 0; checkpoint `stepN` has seen the samples below N*global_batch.
"""

from __future__ import annotations

from pipeline.errors import ConfigError


def check_step(step: int, num_steps: int, what: str) -> None:
    if step < 0:
        raise ConfigError(
            f"step {step} must be >= 0: steps count from 0 ({what} has steps 0..{num_steps - 1})."
        )
    if step >= num_steps:
        raise ConfigError(
            f"step {step} is beyond the end of {what}: it has steps 0..{num_steps - 1} "
            f"({num_steps} steps); pass --step below {num_steps}."
        )
