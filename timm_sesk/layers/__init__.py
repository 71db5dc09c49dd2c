"""SE and SK building blocks."""
from .conv_bn_act import ConvBnAct
from .input_conv import InputConv2d
from .se import SqueezeExcite, se_hidden_channels
from .sk import SelectiveKernel, SelectiveKernelAttn, sk_attn_channels, sk_path_kernels

__all__ = [
    'ConvBnAct',
    'InputConv2d',
    'SelectiveKernel',
    'SelectiveKernelAttn',
    'SqueezeExcite',
    'se_hidden_channels',
    'sk_attn_channels',
    'sk_path_kernels',
]
