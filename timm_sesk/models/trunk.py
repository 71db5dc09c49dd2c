"""The ResNet trunk shared by the SE and SK families.

timm's ``ResNet`` builds the stem, the stages, the head, feature extraction, intermediates and grad checkpointing;
``SeskResNet`` adds the papers' SE and SK options on top of it as flat keyword arguments (so that they work from
``timm.create_model`` and from ``train.py --model-kwargs``), the SENet authors' Caffe stem pooling, and an input
check on the first convolution.
"""
import inspect
from functools import partial
from typing import Optional

from timm.models import ResNet, build_model_with_cfg, resolve_pretrained_cfg
from torch import nn

from timm_sesk.layers import SelectiveKernel, SqueezeExcite, add_input_check
from timm_sesk.loading import checkpoint_filter_fn
from timm_sesk.weights._pretrained import pretrained_source

from .blocks import SE_POSITIONS

__all__ = ['SeskResNet', 'create_sesk_resnet']

# timm's ResNet arguments with their defaults, and what else __init__'s locals() hold before its first assignment.
_RESNET_DEFAULTS = {k: p.default for k, p in inspect.signature(ResNet.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
_NOT_ARGS = ('self', 'kwargs', '__class__')

# The Caffe stem pool has no padding: the stem output, floor((H - 1) / 2) + 1, must cover its 3x3 window.
_CAFFE_STEM_MIN_SIZE = 5


def _check_se_position(se_position: Optional[str]) -> Optional[str]:
    """The SE position, or None for no SE (spelled ``'none'``, ``None``, ``''`` or ``False``)."""
    if not se_position or se_position == 'none':
        return None
    if se_position not in SE_POSITIONS:
        raise ValueError(
            f"se_position must be one of {(*SE_POSITIONS, 'none')}, got {se_position!r} ('none' for no SE)")
    return se_position


class SeskResNet(ResNet):
    """timm's ResNet with Squeeze-and-Excitation and Selective-Kernel blocks.

    All of timm's ResNet arguments (``layers``, ``cardinality``, ``base_width``, ``stem_type``, ``output_stride``,
    ``drop_path_rate``, ...) are accepted and behave as in timm.

    Attributes:
        build_args: Every argument it was built with, defaults included (timm's ``ResNet`` arguments too): a model
            does not otherwise record its ``create_model`` arguments, and ``timm_sesk.to_timm`` tells its twin in
            timm by them.
    """

    def __init__(
            self,
            block: type,
            layers: tuple,
            se_position: Optional[str] = None,
            se_reduction: int = 16,
            se_divisor: int = 8,
            se_squeeze: str = 'avg',
            se_gate: str = 'sigmoid',
            se_bias: bool = True,
            sk_paths: int = 0,
            sk_reduction: int = 16,
            sk_min_attn_channels: int = 32,
            sk_keep_3x3: bool = True,
            sk_split_input: bool = False,
            sk_memory_efficient: bool = False,
            stride_in_1x1: bool = False,
            branch_act: bool = False,
            caffe_stem_pool: bool = False,
            **kwargs,
    ):
        """
        Args:
            block: Block class, ``BasicBlock`` or ``Bottleneck`` from ``timm_sesk.models.blocks``.
            layers: Blocks per stage.
            se_position: SE integration (``'standard'``, ``'pre'``, ``'post'``, ``'identity'``), or ``'none'`` for no
                SE. ``timm.create_model`` drops arguments whose value is None, so ``se_position=None`` reaches only a
                direct call of the entrypoint; ``'none'`` works everywhere, ``train.py --model-kwargs`` included.
            se_reduction: SE reduction ratio r.
            se_divisor: SE bottleneck width is rounded to a multiple of this (1 keeps ``C // r`` exactly).
            se_squeeze: SE global pooling, ``'avg'`` or ``'max'``.
            se_gate: SE gate activation name.
            se_bias: Biases in the SE FC layers.
            sk_paths: Number of SK paths M replacing each 3x3 conv; 0 for no SK.
            sk_reduction: SK fuse reduction ratio r.
            sk_min_attn_channels: SK fuse minimum width L.
            sk_keep_3x3: SK path i is a 3x3 conv with dilation i+1; otherwise a dense (2i+3)x(2i+3) conv.
            sk_split_input: Split the input channels across the SK paths.
            sk_memory_efficient: In training, recompute the SK units' norms, activations and selection in backward
                instead of storing them (less memory, slightly more time; hooks on the recomputed modules fire again
                in backward, as with timm's gradient checkpointing).
            stride_in_1x1: Stride on the bottleneck's first 1x1 conv (Caffe ResNet), not on the 3x3.
            branch_act: Activation on the residual branch's output before SE and the addition (Cadene's SE basic
                block).
            caffe_stem_pool: Stem max-pool without padding and in ceil mode, as in Caffe; the input must then be at
                least 5x5.
            **kwargs: timm ``ResNet`` arguments.
        """
        se_position = _check_se_position(se_position)  # one spelling of "no SE" in build_args
        build_args = {**_RESNET_DEFAULTS, **{k: v for k, v in locals().items() if k not in _NOT_ARGS}, **kwargs}
        block_args = dict(kwargs.pop('block_args', None) or {})
        if se_position:
            block_args['attn_layer'] = partial(
                SqueezeExcite, reduction=se_reduction, divisor=se_divisor, squeeze=se_squeeze, bias=se_bias,
                gate_layer=se_gate)
            block_args['attn_position'] = se_position
        if sk_paths:
            block_args['sk_layer'] = partial(
                SelectiveKernel, num_paths=sk_paths, reduction=sk_reduction, min_attn_channels=sk_min_attn_channels,
                keep_3x3=sk_keep_3x3, split_input=sk_split_input, memory_efficient=sk_memory_efficient)
        if stride_in_1x1:
            block_args['stride_in_1x1'] = True
        if branch_act:
            block_args['branch_act'] = True
        super().__init__(block, layers, block_args=block_args, **kwargs)

        if caffe_stem_pool:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        min_size = _CAFFE_STEM_MIN_SIZE if caffe_stem_pool else 1
        add_input_check(self.conv1[0] if isinstance(self.conv1, nn.Sequential) else self.conv1, min_size=min_size)
        self.fused = False  # set by timm_sesk.fuse
        self.build_args = build_args

    def train(self, mode: bool = True) -> 'SeskResNet':
        if mode and self.fused:
            raise RuntimeError(
                'this model was fused for inference (timm_sesk.fuse folded its BatchNorms away) and cannot be '
                'trained; create a new model with timm.create_model to train.')
        return super().train(mode)


def create_sesk_resnet(variant: str, pretrained: bool = False, **kwargs) -> SeskResNet:
    """Build a registered variant through timm's ``build_model_with_cfg``.

    With ``pretrained=True`` the weights come through timm's ``load_pretrained``, in one pass: the pretrained cfg is
    resolved once, a URL file is downloaded and checked against its manifest pin by ``timm_sesk.weights`` and handed
    to timm as that exact file, the checkpoint's layout is found and it must fit exactly
    (``timm_sesk.loading.checkpoint_filter_fn``), and failures raise ``PretrainedWeightsError`` naming the weights
    and the fix.

    Args:
        variant: Registered model name.
        pretrained: Load the pretrained weights of the selected tag.
        **kwargs: Model and ``build_model_with_cfg`` arguments.
    """
    if not pretrained:
        return build_model_with_cfg(SeskResNet, variant, False, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.pop('pretrained_cfg', None),
                                 pretrained_cfg_overlay=kwargs.pop('pretrained_cfg_overlay', None))
    with pretrained_source(cfg.to_dict(), kwargs.get('cache_dir')) as cfg:
        return build_model_with_cfg(
            SeskResNet, variant, True, pretrained_cfg=cfg, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)
