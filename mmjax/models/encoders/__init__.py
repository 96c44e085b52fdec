"""Encoders, one file per family; importing this package registers them all."""

from mmjax.models.encoders import conv  # noqa: F401
from mmjax.models.encoders import recurrent  # noqa: F401
from mmjax.models.encoders import resnet  # noqa: F401
from mmjax.models.encoders import transformer  # noqa: F401
