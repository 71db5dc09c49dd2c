"""Load exported Hub folders where timm_sesk cannot be imported, as someone without the plugin loads them: plain timm
(``local-dir:`` and ``hf-hub:``), transformers' ``AutoModelForImageClassification`` and ``pipeline``.

Run by tests/test_portable.py, in a subprocess that inherits the loopback Hub's ``HF_ENDPOINT`` and ``HF_HUB_CACHE``:

    python tests/without_plugin.py JOB.json

JOB.json names the inputs (a safetensors file holding ``x``), the folders and their Hub repositories, and where to
write the logits (safetensors) and what else was seen (JSON).
"""
import importlib.abc
import json
import sys
from pathlib import Path


class _Absent(importlib.abc.MetaPathFinder):
    """``import timm_sesk`` fails, as where it is not installed. An editable install's import finder outranks
    PYTHONPATH, so a finder ahead of it on ``sys.meta_path`` refuses the name."""

    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'timm_sesk':
            raise ImportError(f'No module named {name!r} (timm_sesk is absent here)')
        return None


sys.meta_path.insert(0, _Absent())


def main(job_file: str) -> int:
    import numpy as np
    import safetensors.torch
    import timm
    import torch
    import transformers
    from PIL import Image

    try:
        import timm_sesk  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError('timm_sesk was imported where it must be absent')
    job = json.loads(Path(job_file).read_text())
    x = safetensors.torch.load_file(job['inputs'])['x']
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(96, 80, 3), dtype=np.uint8))
    logits, seen = {}, {}
    for name, case in job['cases'].items():
        with torch.no_grad():
            local = timm.create_model(f"local-dir:{case['folder']}", pretrained=True).eval()
            logits[f'{name}.local'] = local(x)
            logits[f'{name}.hub'] = timm.create_model(f"hf-hub:{case['repo']}", pretrained=True).eval()(x)
            auto = transformers.AutoModelForImageClassification.from_pretrained(case['folder']).eval()
            logits[f'{name}.transformers'] = auto(pixel_values=x).logits
        processor = transformers.AutoImageProcessor.from_pretrained(case['folder'])
        logits[f'{name}.pixels'] = processor(image, return_tensors='pt')['pixel_values']
        classify = transformers.pipeline('image-classification', model=case['folder'], top_k=3)
        seen[name] = {'architecture': local.pretrained_cfg['architecture'], 'id2label': auto.config.id2label,
                      'pipeline': classify(image)}
    assert not [m for m in sys.modules if m.partition('.')[0] == 'timm_sesk']
    safetensors.torch.save_file({k: v.contiguous() for k, v in logits.items()}, job['logits'])
    Path(job['seen']).write_text(json.dumps(seen))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
