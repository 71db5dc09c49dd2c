"""The error raised when pretrained weights cannot be loaded."""

__all__ = ['PretrainedWeightsError']


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be loaded; nothing was loaded into any model."""
