"""Publishing a tag's source checkpoint the way its source does, with random weights, for loading tests."""
import os

import safetensors.torch
import timm
import torch
from helpers import randomize_bn
from source_nets import build_source_network
from torch import nn

from timm_sesk.weights import WeightSpec
from timm_sesk.weights._pretrained import url_cache_path

__all__ = ['publish_source', 'source_network']


def source_network(spec: WeightSpec, seed: int = 0) -> nn.Module:
    """The network the tag's weights were trained as, with random weights and non-identity BatchNorms, in eval."""
    torch.manual_seed(seed)
    trained_as = spec.trained_as
    net = build_source_network(trained_as) if ':' in trained_as else timm.create_model(trained_as)
    return randomize_bn(net, seed=seed).eval()


def publish_source(hub, spec: WeightSpec, seed: int = 0) -> nn.Module:
    """Publish a random checkpoint of the tag's source network where the tag loads it from; return that network.

    Hub tags go to the loopback Hub as ``model.safetensors`` (timm's Hub format). URL tags are pre-seeded into
    timm_sesk's URL cache as the source's file: a plain state dict, or an mmcv checkpoint for mmpretrain.
    """
    net = source_network(spec, seed)
    state_dict = net.state_dict()
    if spec.hf_hub_id:
        hub.publish(spec.hf_hub_id, spec.hf_hub_filename or 'model.safetensors', safetensors.torch.save(state_dict))
    else:
        checkpoint = {'meta': {'mmcls_version': '0.15.0'}, 'state_dict': state_dict} \
            if spec.mapping == 'mmpretrain' else state_dict
        path = url_cache_path(spec.url)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(checkpoint, path)
    return net
