"""How long `timm-sesk predict -m sk_resnet18` takes to load, or to fail, where the Hub cannot be reached.

    python -m benchmarks.unreachable_hub                      # this checkout, every endpoint, cold and warm cache
    python -m benchmarks.unreachable_hub --tree OTHER refused  # another checkout's code (e.g. main), some endpoints

Run from a source checkout: it serves the tag's weights from the test suite's loopback Hub (``tests/loopback_hub.py``)
to fill a warm cache, then runs the command line in a subprocess, ``HF_HUB_OFFLINE`` and
``TIMM_SESK_DOWNLOAD_TIMEOUT`` unset, with ``HF_ENDPOINT`` pointing at each endpoint: a refused port, an address
expected to be non-routable, a name that does not resolve, a port whose listen queue is full (its SYNs are dropped, as
a non-routable address's are), and a server that accepts and never answers. For each it prints the wall time
(Python's start-up included), the exit status and how many lines the command wrote to stderr (huggingface_hub logs
its retries there), and the last line.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('only', nargs='*', help='endpoints whose label contains one of these words')
    parser.add_argument('--tree', default=ROOT, help='the source tree whose timm_sesk runs (default: this one)')
    parser.add_argument('--limit', type=float, default=900, help='seconds before a run counts as hanging')
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(ROOT, 'tests'))
    from loopback_hub import start_session_hub  # before huggingface_hub is imported
    hub = start_session_hub()
    import numpy as np
    from PIL import Image
    from sources import publish_source

    from timm_sesk.weights import WEIGHTS

    publish_source(hub, next(s for s in WEIGHTS if s.name == 'sk_resnet18.ra_in1k'))
    work = tempfile.mkdtemp(prefix='unreachable_hub_')
    image = os.path.join(work, 'photo.png')
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (80, 96, 3), dtype=np.uint8)).save(image)
    command = [sys.executable, '-m', 'timm_sesk', 'predict', '-m', 'sk_resnet18', '-k', '1', image]
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_OFFLINE', 'TIMM_SESK_DOWNLOAD_TIMEOUT')}
    env.update(OMP_NUM_THREADS='1', PYTHONPATH=args.tree)
    warm = tempfile.mkdtemp(prefix='warm_', dir=work)
    subprocess.run(command, env=dict(env, HF_HUB_CACHE=warm), capture_output=True, check=True, cwd=args.tree)

    silent = socket.create_server(('127.0.0.1', 0), backlog=100)  # accepts, never answers
    held = []
    threading.Thread(target=lambda: [held.append(silent.accept()) for _ in iter(int, 1)], daemon=True).start()
    full = socket.create_server(('127.0.0.1', 0), backlog=0)  # never accepts: once its queue holds one, SYNs drop
    held.append(socket.create_connection(full.getsockname()))
    endpoints = {
        'refused 127.0.0.1:9': 'http://127.0.0.1:9',
        'non-routable 10.255.255.1': 'http://10.255.255.1',
        'no DNS (huggingface.co)': 'https://huggingface.co',
        'SYN dropped (full listen queue)': f'http://127.0.0.1:{full.getsockname()[1]}',
        'stall (accepts, never answers)': f'http://127.0.0.1:{silent.getsockname()[1]}',
    }
    print(f'{" ".join(command[1:4])} ... with {args.tree}')
    for label, endpoint in endpoints.items():
        if args.only and not any(word in label for word in args.only):
            continue
        for cache in ('cold', 'warm'):
            cache_dir = warm if cache == 'warm' else tempfile.mkdtemp(prefix='cold_', dir=work)
            start = time.monotonic()
            try:
                run = subprocess.run(command, env=dict(env, HF_ENDPOINT=endpoint, HF_HUB_CACHE=cache_dir),
                                     capture_output=True, text=True, cwd=args.tree, timeout=args.limit)
                lines = [line for line in run.stderr.splitlines() if line.strip()]
                last = (lines or run.stdout.strip().splitlines() or [''])[-1]
                outcome = f'exit {run.returncode}, {len(lines)} stderr lines: {last[:160]}'
            except subprocess.TimeoutExpired:
                outcome = f'still running after {args.limit:g} s'
            print(f'{label:32s} {cache}: {time.monotonic() - start:6.1f} s  {outcome}', flush=True)


if __name__ == '__main__':
    main()
