"""timm's built-in twins: which architectures have one, which knobs keep it, and ``to_timm`` / ``from_timm``, every
tensor accounted for both ways (the twins' equality with our models: tests/test_equivalence.py)."""
import pytest
import timm
import torch
from helpers import IMG, randomize_bn, rel_err

import timm_sesk
from timm_sesk.errors import NoTwinError
from timm_sesk.twin import to_timm, twin_of, twins
from timm_sesk.weights import REFERENCES


def _no_twin(model: torch.nn.Module) -> str:
    with pytest.raises(NoTwinError) as e:
        twin_of(model)
    return str(e.value)


def test_exactly_the_registered_references_are_portable_at_default_knobs():
    portable = twins()
    assert sorted(portable) == sorted(a for a, r in REFERENCES.items() if r.registered)
    assert set(REFERENCES) - set(portable) == {'sk_resnet26', 'sk_resnet101'}
    assert all(timm.is_model(name) for name in portable.values())
    for arch in ('sk_resnet26', 'sk_resnet101'):
        with torch.device('meta'):
            message = _no_twin(timm.create_model(arch))
        assert f'timm registers no {REFERENCES[arch].name}' in message and '\n' not in message


@pytest.mark.parametrize('arch', ['se_resnet18', 'sk_resnet34', 'se_resnext26_32x4d_orig', 'se_net154_orig'])
def test_every_tensor_is_accounted_for_both_ways(arch):
    """The inverse mapping, from the forward one: every key of the twin gets exactly one of ours, of its shape (each
    mapping's families: timm's resnet.py, sknet.py, senet.py with its 7x7 and its deep stem)."""
    with torch.device('meta'):
        model = timm.create_model(arch)
        twin = to_timm(model)
        reference = timm.create_model(REFERENCES[arch].name)
    assert type(twin) is type(reference)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert sum(v.numel() for v in twin.state_dict().values()) == sum(v.numel() for v in model.state_dict().values())


@pytest.mark.parametrize('arch, knobs, because', [
    ('se_resnet18', dict(se_reduction=8), "timm's seresnet18 is se_resnet18 with se_reduction=16"),
    ('se_resnet50', dict(se_position='post', se_squeeze='max'),
     "timm's seresnet50 is se_resnet50 with se_position='standard', se_squeeze='avg'"),
    ('sk_resnet50', dict(sk_paths=3), "timm's skresnext50_32x4d is sk_resnet50 with sk_paths=2"),
    ('sk_resnet18', dict(se_position='standard'), "timm's skresnet18 is sk_resnet18 with se_position=None"),
    ('se_resnet50_orig', dict(output_stride=16), "timm's legacy_seresnet50 takes no output_stride"),
    ('se_resnet18', dict(act_layer='silu'), "timm's seresnet18 is se_resnet18 with act_layer=ReLU"),
])
def test_a_knob_without_a_twin_is_named_in_one_line(arch, knobs, because):
    with torch.device('meta'):
        message = _no_twin(timm.create_model(arch, **knobs))
    given = ', '.join(f'{k}={v!r}' for k, v in knobs.items())
    assert message == f'{arch} with {given} has no twin built into timm: {because}'


def test_arguments_the_twin_takes_pass_on_and_the_twin_computes_the_same():
    model = randomize_bn(timm.create_model('se_resnet18', num_classes=5, in_chans=1, output_stride=16,
                                           drop_path_rate=0.1, sk_memory_efficient=True)).eval().double()
    assert twin_of(model).kwargs == dict(num_classes=5, in_chans=1, output_stride=16, drop_path_rate=0.1)
    twin = to_timm(model)
    assert twin.pretrained_cfg['architecture'] == 'seresnet18' and 'hf_hub_id' not in twin.pretrained_cfg
    assert twin.pretrained_cfg['input_size'][0] == 1 and twin.pretrained_cfg['num_classes'] == 5
    assert not twin.training and next(twin.parameters()).dtype == torch.float64
    x = torch.randn(2, 1, IMG, IMG, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(twin(x), model(x)) < 1e-12  # float64: the same function, not merely close
    with pytest.raises(NoTwinError, match='fused'):
        to_timm(timm_sesk.fuse(model))
