"""Fusion modules, one file per family; importing this package registers them all."""

from mmjax.models.fusion import concat  # noqa: F401
from mmjax.models.fusion import decision  # noqa: F401
from mmjax.models.fusion import bottleneck  # noqa: F401
from mmjax.models.fusion import early  # noqa: F401
from mmjax.models.fusion import gated  # noqa: F401
from mmjax.models.fusion import lowrank  # noqa: F401
from mmjax.models.fusion import mult  # noqa: F401
from mmjax.models.fusion import tensor  # noqa: F401
