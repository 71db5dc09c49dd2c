"""The errors raised when weights cannot be read or loaded."""

__all__ = ['CheckpointReadError', 'PretrainedWeightsError']


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be loaded; nothing was loaded into any model."""


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read as weights (not a checkpoint, no tensors, or Python objects in it)."""
