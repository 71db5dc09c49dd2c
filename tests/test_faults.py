"""Faults of the network, the disk and the output folder: each ends in one clear error, soon, leaves no half-written or
poisoned file in a cache or an export's folder, and destroys nothing of the user's.

The loopback Hub (``tests/loopback_hub.py``) stalls, cuts, drips and lies; a closed port refuses. Download time limits
are a setting (``TIMM_SESK_DOWNLOAD_TIMEOUT``), set short here. A full disk is ``RLIMIT_FSIZE`` (writes past it fail
with EFBIG, as on a full disk with ENOSPC), set in this process for one call with SIGXFSZ ignored: the suite runs as
root, where a read-only folder by chmod is still writable, and mounting a small tmpfs needs privileges CI may lack.
A folder that cannot be written is one under /sys (EPERM, for root too) or below a file (ENOTDIR).
"""
import contextlib
import errno
import io
import json
import os
import resource
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import safetensors.torch
import timm
import torch
from loopback_hub import Fault

import timm_sesk
from timm_sesk.errors import CheckpointReadError, PretrainedWeightsError, StorageError
from timm_sesk.files import STALE_AFTER
from timm_sesk.weights import Checkpoint
from timm_sesk.weights import _pretrained as plumbing

TIMEOUT = 0.5  # TIMM_SESK_DOWNLOAD_TIMEOUT here: every fault ends within a few of these
WITHIN = 20.0  # seconds after which a call that should have failed counts as hanging


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch):
    monkeypatch.setenv('TIMM_SESK_DOWNLOAD_TIMEOUT', str(TIMEOUT))  # the documented setting


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``, run in a thread so that a call that blocks fails the test instead of hanging the suite."""
    outcome = {}

    def run():
        try:
            outcome['value'] = call()
        except BaseException as e:  # handed to the test's thread
            outcome['error'] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f'still blocked after {seconds:g} s')
    if 'error' in outcome:
        raise outcome['error']
    return outcome.get('value')


def _checkpoint(values: int = 50_000) -> bytes:
    buffer = io.BytesIO()
    torch.save({'weight': torch.arange(float(values))}, buffer)
    return buffer.getvalue()


def _files(folder: Path) -> dict:
    return {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()} if folder.is_dir() else {}


@contextlib.contextmanager
def disk_full_after(size: int):
    """Files of this process cannot grow past ``size`` bytes (EFBIG) inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _publish_hub_weights(hub, repo: str) -> None:
    hub.publish(repo, 'model.safetensors', safetensors.torch.save(timm.create_model('sk_resnet18').state_dict()))
    hub.publish(repo, 'config.json', json.dumps({'architecture': 'sk_resnet18', 'num_classes': 1000}).encode())


@pytest.fixture
def refusing_hub(monkeypatch):
    """huggingface_hub pointed at a closed port, as HF_ENDPOINT would at import (restored after the test)."""
    from huggingface_hub import constants

    unreachable = f'http://127.0.0.1:{closed_port()}'
    monkeypatch.setattr(constants, 'ENDPOINT', unreachable)
    monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE',
                        f'{unreachable}/{{repo_id}}/resolve/{{revision}}/{{filename}}')
    return unreachable


# --- URL downloads: time limits, whole files, nothing poisoned ------------------------------------------------------

DATA = _checkpoint()
URL_FAULTS = {
    'no answer': (Fault('stall'), f'no answer within {TIMEOUT:g} s (TIMM_SESK_DOWNLOAD_TIMEOUT)'),
    'stalls mid-body': (Fault('stall', at=0.5), f'no answer within {TIMEOUT:g} s'),
    'cut at half': (Fault('cut', at=0.5), f'the connection closed after {len(DATA) // 2} of the {len(DATA)} bytes'),
    'drips': (Fault('drip', interval=0.05), f'in {TIMEOUT:g} s (TIMM_SESK_DOWNLOAD_TIMEOUT): it has stalled'),
    'announces more': (Fault('lie', length=2 * len(DATA)), f'closed after {len(DATA)} of the {2 * len(DATA)} bytes'),
    'announces less': (Fault('lie', length=len(DATA) // 2), 'sent a file that is not a readable checkpoint (it is '
                                                            'truncated or corrupt). It was discarded'),
    'sends garbage': (Fault('lie', data=b'\0' * len(DATA)), 'not a readable checkpoint (it is truncated or corrupt)'),
}


@pytest.mark.parametrize('case', list(URL_FAULTS))
def test_a_url_download_that_fails_ends_soon_caches_nothing_and_the_next_load_works(hub, case):
    fault, words = URL_FAULTS[case]
    url = hub.publish_url(f'fault-{case.replace(" ", "-")}.pth', DATA)
    folder = Path(plumbing.url_cache_path(url)).parent
    start = time.monotonic()
    with hub.faulty(fault), pytest.raises(PretrainedWeightsError) as err:
        within(WITHIN, lambda: plumbing.fetch_url(url, None, 'the weights', progress=False))
    assert time.monotonic() - start < 10 * TIMEOUT
    assert words in str(err.value)
    if 'readable' not in words:
        assert 'a network problem, nothing was cached' in str(err.value)
    assert _files(folder) == {}, 'no partial or unchecked file is left in the cache'
    assert Path(plumbing.fetch_url(url, None, 'the weights', progress=False)).read_bytes() == DATA


def test_a_pinned_download_cut_short_is_a_network_problem_and_a_whole_other_file_its_provenance(hub):
    pin = plumbing.hashlib.sha256(DATA).hexdigest()[:8]
    url = hub.publish_url('pinned.pth', DATA)
    with hub.faulty(Fault('cut', at=0.5)), pytest.raises(PretrainedWeightsError) as cut:
        plumbing.fetch_url(url, pin, 'the weights', progress=False)
    assert 'a network problem' in str(cut.value) and 'does not start with the pinned' not in str(cut.value)
    with hub.faulty(Fault('lie', data=_checkpoint(values=50_001)[:len(DATA)])), \
            pytest.raises(PretrainedWeightsError) as other:
        plumbing.fetch_url(url, pin, 'the weights', progress=False)
    assert f'does not start with the pinned {pin}: it arrived as long as the server announced' in str(other.value)
    assert 'provenance' in str(other.value) and 'network' not in str(other.value)


def test_partial_files_of_killed_downloads_go_once_stale_and_live_ones_stay(hub):
    url = hub.publish_url('after-a-kill.pth', DATA)
    other = Path(plumbing.url_cache_path(hub.publish_url('other.pth', DATA))).parent
    other.mkdir(parents=True, exist_ok=True)
    stale, live = other / '.part-0-other.pth', other / '.part-1-other.pth'
    for path in (stale, live):
        path.write_bytes(DATA[:100])
    old = time.time() - STALE_AFTER - 60
    os.utime(stale, (old, old))
    plumbing.fetch_url(url, None, 'the weights', progress=False)
    assert not stale.exists() and live.exists()


def test_an_overlay_url_cut_at_half_is_not_cached_and_the_next_load_works(hub):
    source = timm.create_model('se_resnet18', layers=(1, 1, 1, 1)).eval()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    url = hub.publish_url('se18-overlay.pth', buffer.getvalue())

    def load():
        return timm.create_model('se_resnet18', layers=(1, 1, 1, 1), pretrained=True,
                                 pretrained_cfg_overlay=dict(url=url, hf_hub_id=None))
    with hub.faulty(Fault('cut', at=0.5)), pytest.raises(PretrainedWeightsError, match='a network problem'):
        load()
    model = load()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_hub_download_that_breaks_off_is_one_network_error(hub):
    repo = 'sesk-test/breaks-off'
    hub.publish(repo, 'model.safetensors', safetensors.torch.save({'w': torch.zeros(1000)}))
    with hub.faulty(Fault('cut', at=0.5, methods=('GET',))), pytest.raises(PretrainedWeightsError) as err:
        within(WITHIN, lambda: timm.create_model('sk_resnet18', pretrained=True,
                                                 pretrained_cfg_overlay=dict(hf_hub_id=repo)))
    assert 'the download broke off (RemoteProtocolError: ' in str(err.value)
    assert 'a network problem, nothing was cached' in str(err.value)


# --- what is not a file: refused before it is opened ----------------------------------------------------------------

def test_a_fifo_given_as_a_checkpoint_is_refused_before_it_blocks(tmp_path):
    fifo = tmp_path / 'checkpoint.pth'
    os.mkfifo(fifo)
    for read in (lambda: Checkpoint.read(fifo), lambda: timm_sesk.graft(str(fifo), 'se_resnet18'),
                 lambda: timm_sesk.load_weights(timm.create_model('se_resnet18'), fifo)):
        with pytest.raises(CheckpointReadError, match=f'cannot read checkpoint {fifo}: it is a FIFO'):
            within(WITHIN, read)
    with pytest.raises(PretrainedWeightsError, match=f'{fifo} is a FIFO .named pipe., not a checkpoint file'):
        within(WITHIN, lambda: timm.create_model('se_resnet18', pretrained=True,
                                                 pretrained_cfg_overlay=dict(file=str(fifo))))
    with pytest.raises(CheckpointReadError, match='it is a folder, not a file'):
        Checkpoint.read(tmp_path)


# --- disks: full, read-only, in the way ---------------------------------------------------------------------------

def test_a_full_disk_during_a_url_download_is_a_disk_error_not_a_network_one(hub, tmp_path):
    url = hub.publish_url('too-big.pth', DATA)
    with disk_full_after(len(DATA) // 4), pytest.raises(StorageError) as err:
        plumbing.fetch_url(url, None, 'the weights', cache_dir=str(tmp_path), progress=False)
    assert err.value.errno == errno.EFBIG
    assert 'cannot write the download into' in str(err.value) and 'TORCH_HOME' in str(err.value)
    assert 'network' not in str(err.value)
    assert _files(Path(plumbing.url_cache_path(url, str(tmp_path))).parent) == {}


def test_a_full_disk_during_a_hub_download_is_a_disk_error(hub, tmp_path):
    repo = 'sesk-test/fills-the-disk'
    hub.publish(repo, 'model.safetensors', safetensors.torch.save({'w': torch.zeros(100_000)}))
    with disk_full_after(100_000), pytest.raises(StorageError) as err:
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo),
                          cache_dir=str(tmp_path))
    assert err.value.errno == errno.EFBIG
    assert f'cannot write the pretrained weights to {tmp_path}' in str(err.value) and 'HF_HUB_CACHE' in str(err.value)


def test_a_disk_error_reading_a_local_checkpoint_is_not_called_a_cache_write(tmp_path):
    # Only a Hub download writes inside explained(): a local file's error (a permission, say) passes as it is.
    path = str(tmp_path / 'mine.pth')
    denied = PermissionError(errno.EACCES, 'Permission denied', path)
    with pytest.raises(PermissionError) as err, plumbing.explained('the weights', {'file': path}):
        raise denied
    assert err.value is denied


@pytest.mark.parametrize('where', ['/sys/timm_sesk_test', '{file}/cache'])
def test_a_cache_that_cannot_be_written_is_one_disk_error(hub, tmp_path, where):
    (tmp_path / 'file').write_text('in the way')
    cache = where.format(file=tmp_path / 'file')
    url = hub.publish_url('unwritable.pth', DATA)
    with pytest.raises(StorageError, match=f'cannot write the download cache {cache}/timm_sesk/'):
        plumbing.fetch_url(url, None, 'the weights', cache_dir=cache, progress=False)
