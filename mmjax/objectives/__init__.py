"""Objectives: what a run minimises, one module each; importing this package registers them all.
`build`, `finalize` and `add_sums` are the trainer's entry points (mmjax.objectives.base)."""

from mmjax.objectives import classification  # noqa: F401
from mmjax.objectives import contrastive  # noqa: F401
from mmjax.objectives import distill  # noqa: F401
from mmjax.objectives import ogm_ge  # noqa: F401
from mmjax.objectives.base import (OBJECTIVES, Objective, add_sums, build, finalize,  # noqa: F401
                                   name_of)
