"""SE and SK building blocks."""
from .conv_bn_act import ConvBnAct, factory_kwargs
from .input_check import add_input_check, check_input_batch
from .se import SqueezeExcite, se_hidden_channels
from .sk import SelectiveKernel, SelectiveKernelAttn, freeze_sk_attn_norm, sk_attn_channels, sk_path_kernels
from .tap import AttentionTap

__all__ = [
    'AttentionTap',
    'ConvBnAct',
    'SelectiveKernel',
    'SelectiveKernelAttn',
    'SqueezeExcite',
    'add_input_check',
    'check_input_batch',
    'factory_kwargs',
    'freeze_sk_attn_norm',
    'se_hidden_channels',
    'sk_attn_channels',
    'sk_path_kernels',
]
