"""Optional dependencies: the extras of setup.cfg, imported on first use with an error naming the install."""
import importlib
from typing import Any

from timm_sesk.errors import MissingExtraError

__all__ = ['MissingExtraError', 'require']

# The extra of setup.cfg that installs each optional module.
_EXTRAS = {
    'matplotlib': 'plot', 'onnx': 'onnx', 'onnxscript': 'onnx', 'onnxruntime': 'onnx', 'openvino': 'openvino',
    'nncf': 'openvino', 'transformers': 'transformers'}


def require(module: str, purpose: str) -> Any:
    """Import an optional dependency, or raise ``MissingExtraError`` saying which extra installs it.

    Args:
        module: Module to import (``onnxruntime``, ``openvino``, ``nncf``, ``matplotlib``, ...).
        purpose: What needs it, for the message (``'--runtime openvino'``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = _EXTRAS.get(module)
        # timm_sesk is installed from a checkout (it is not on a package index): the extra installs from there.
        how = f'pip install ".[{extra}]" in your timm_sesk checkout, or pip install {module}' if extra \
            else f'pip install {module}'
        raise MissingExtraError(f'{purpose} needs {module}, which is not installed: {how}') from e
