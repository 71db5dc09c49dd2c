"""Regenerate docs/attention_sk_resnet50.png, the attention figure of README.md: ``python tests/readme_figure.py``.

No network is used. The loopback Hub of the test suite serves sk_resnet50's weights, published here as a random
stand-in of the real file (timm's ``skresnext50_32x4d`` with random weights), and ``timm-sesk attention`` plots
scikit-image's chelsea photo (CC0) at three input sizes. The figure therefore shows what the command draws, not
what trained weights attend to.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
OUT = REPO / 'docs' / 'attention_sk_resnet50.png'
SCALES = '128,224,320'
TITLE = 'sk_resnet50 on chelsea at 3 input sizes: random stand-in weights from the loopback Hub, not ImageNet-trained'


def main() -> int:
    sys.path.insert(0, str(TESTS))
    from loopback_hub import start_session_hub

    hub = start_session_hub()  # before anything imports huggingface_hub; the command inherits its environment

    from PIL import Image
    from skimage import data
    from sources import publish_source

    from timm_sesk.weights import weights_for

    publish_source(hub, weights_for('sk_resnet50')[0], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / 'chelsea.jpg'
        Image.fromarray(data.chelsea()).save(photo, quality=95)
        command = [
            sys.executable, '-m', 'timm_sesk', 'attention', str(photo), '--model', 'sk_resnet50', '--scales', SCALES,
            '--out', str(OUT), '--figsize', '10,6', '--dpi', '90', '--title', TITLE]
        result = subprocess.run(command, cwd=REPO, env=dict(os.environ))
    hub.stop()
    if result.returncode == 0:
        print(f'{OUT.relative_to(REPO)}: {OUT.stat().st_size / 1024:.0f} KiB')
    return result.returncode


if __name__ == '__main__':
    sys.exit(main())
