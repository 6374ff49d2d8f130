"""Test-wide settings: Hypothesis profiles.

`ci` (the default) runs the sizes the issues ask for; `soak` runs far more, for a long local run:
`HYPOTHESIS_PROFILE=soak pytest tests/domain/test_oracle.py`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, stateful_step_count=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("soak", max_examples=5_000, stateful_step_count=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, stateful_step_count=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
