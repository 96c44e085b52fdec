"""Fusion modules, one file per family; importing this package registers them all."""

from mmjax.models.fusion import concat  # noqa: F401
from mmjax.models.fusion import decision  # noqa: F401
