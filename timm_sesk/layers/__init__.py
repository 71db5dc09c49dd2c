"""SE and SK building blocks."""
from .conv_bn_act import ConvBn, ConvBnAct, conv_bn_eval
from .input_conv import InputConv2d
from .se import SqueezeExcite, se_hidden_channels
from .sk import SelectiveKernel, SelectiveKernelAttn, freeze_sk_attn_norm, sk_attn_channels, sk_path_kernels
from .tap import AttentionTap

__all__ = [
    'AttentionTap',
    'ConvBn',
    'ConvBnAct',
    'InputConv2d',
    'SelectiveKernel',
    'SelectiveKernelAttn',
    'SqueezeExcite',
    'conv_bn_eval',
    'freeze_sk_attn_norm',
    'se_hidden_channels',
    'sk_attn_channels',
    'sk_path_kernels',
]
