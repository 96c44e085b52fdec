"""Evaluators: what a run measures, one module each; importing this package registers them all.
`build` and `Functions` are the trainer's entry points (mmjax.evaluators.base)."""

from mmjax.evaluators import classification  # noqa: F401
from mmjax.evaluators import interactions  # noqa: F401
from mmjax.evaluators import linear_probe  # noqa: F401
from mmjax.evaluators import retrieval  # noqa: F401
from mmjax.evaluators import robustness  # noqa: F401
from mmjax.evaluators.base import EVALUATORS, Evaluator, Functions, build, collect  # noqa: F401
