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
from timm_sesk import deploy
from timm_sesk.cli import main
from timm_sesk.errors import CheckpointReadError, ExportFolderError, PretrainedWeightsError, StorageError
from timm_sesk.files import EXPORT_FILES, STALE_AFTER
from timm_sesk.publish import export_hub_folder
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
    assert 'the download broke off (' in str(err.value)  # RemoteProtocolError (httpx), ChunkedEncodingError (requests)
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


# --- exports: whole or not at all, never over the user's files -------------------------------------------------------

def _small() -> torch.nn.Module:
    return timm.create_model('se_resnet18', layers=(1, 1, 1, 1), num_classes=10).eval()


def _hub_export(out: Path, **kwargs) -> Path:
    return export_hub_folder('se_resnet18', out, model=_small(), dataset='none', model_args=dict(layers=(1, 1, 1, 1)),
                             **kwargs)


OLD_OPENVINO = {'model.xml': b'<net/>', 'model.bin': b'\0' * 16, 'deploy.json': b'{"format": "openvino"}',
                'data_config.json': b'{"input_size": [3, 64, 64]}'}


def test_an_export_into_a_folder_holding_files_needs_overwrite_then_replaces_only_the_export(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    for name, data in {**OLD_OPENVINO, 'notes.txt': b'mine'}.items():
        (out / name).write_bytes(data)
    before = _files(out)
    with pytest.raises(ExportFolderError, match=r'holds files .* pass overwrite=True'):
        _hub_export(out)
    with pytest.raises(ExportFolderError, match='holds files'):
        deploy.export(_small(), out, 'onnx', log=None)
    assert _files(out) == before
    _hub_export(out, overwrite=True)
    assert sorted(_files(out)) == ['README.md', 'config.json', 'data_config.json', 'model.safetensors', 'notes.txt']
    assert (out / 'notes.txt').read_bytes() == b'mine'  # not an export's file: kept
    assert json.loads((out / 'data_config.json').read_text())['input_size'] == [3, 224, 224]  # the new export's
    with pytest.raises(ExportFolderError, match='is a file'):
        _hub_export(out / 'notes.txt', overwrite=True)


def test_an_export_never_writes_through_a_symlink(tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    out = tmp_path / 'out'
    out.mkdir()
    for name in ('README.md', 'model.safetensors', 'model.onnx'):
        (outside / name).write_text(f'my {name}')
        (out / name).symlink_to(outside / name)
    _hub_export(out, overwrite=True)
    assert {p.name: p.read_text() for p in outside.iterdir()} == {n: f'my {n}' for n in
                                                                  ('README.md', 'model.safetensors', 'model.onnx')}
    assert not any(p.is_symlink() for p in out.iterdir())
    assert not (out / 'model.onnx').exists()  # the other format's file (here a link) went with the old export
    assert timm.create_model(f'local-dir:{out}', pretrained=True).num_classes == 10


@pytest.mark.parametrize('failure', [OSError(errno.EIO, 'I/O error'), KeyboardInterrupt()])
@pytest.mark.parametrize('writer', ['hub', 'onnx'])
def test_an_export_that_fails_midway_leaves_the_folder_as_it_was(tmp_path, monkeypatch, failure, writer):
    def half_then_fail(*args):
        path = Path(args[-1]) if writer == 'onnx' else Path(args[1]) / 'model.safetensors'
        path.write_bytes(b'half a model')
        raise failure

    monkeypatch.setattr(*(('timm_sesk.deploy._export_onnx', half_then_fail) if writer == 'onnx' else
                          ('timm_sesk.publish._save', half_then_fail)))
    kept, fresh = tmp_path / 'kept', tmp_path / 'fresh'
    kept.mkdir()
    for name, data in {**OLD_OPENVINO, 'notes.txt': b'mine'}.items():
        (kept / name).write_bytes(data)
    before = _files(kept)
    for out, overwrite in ((kept, True), (fresh, False)):
        with pytest.raises(type(failure)):
            if writer == 'onnx':
                deploy.export(_small(), out, 'onnx', log=None, overwrite=overwrite)
            else:
                _hub_export(out, overwrite=overwrite)
    assert _files(kept) == before, 'no half-written file, no staging folder, the previous export intact'
    assert not fresh.exists()


def test_a_full_disk_during_an_export_is_one_disk_error_and_the_folder_stays(tmp_path):
    out = tmp_path / 'out'
    _hub_export(out)
    before = _files(out)
    with disk_full_after(100_000), pytest.raises(StorageError) as err:
        _hub_export(out, overwrite=True)
    assert err.value.errno == errno.EFBIG and f'cannot write the export folder {out}' in str(err.value)
    assert _files(out) == before


@pytest.mark.parametrize('where', ['/sys/timm_sesk_test/out', '{file}/out'])
def test_an_export_folder_that_cannot_be_made_is_one_disk_error(tmp_path, where):
    (tmp_path / 'file').write_text('in the way')
    with pytest.raises(StorageError, match='cannot write the export folder'):
        _hub_export(Path(where.format(file=tmp_path / 'file')))


def test_every_file_an_export_writes_is_declared(tmp_path):
    hub_files = {p.name for p in _hub_export(tmp_path / 'hub').iterdir()}
    assert hub_files == {'README.md', 'config.json', 'data_config.json', 'model.safetensors'}
    deployed = {deploy.META_FILE, deploy.DATA_CONFIG_FILE, *deploy._MODEL_FILES.values(), 'model.bin'}
    assert hub_files | deployed == EXPORT_FILES  # and export_folder refuses to move in a file it does not declare


# --- the command line: one line for each -----------------------------------------------------------------------------

def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('timm-sesk: error: '), stderr
    return lines[0]


def test_command_line_network_and_disk_faults_are_one_line(hub, tmp_path, capsys, refusing_hub):
    url = hub.publish_url('cli-stall.pth', DATA)
    overlay = f"pretrained_cfg_overlay=dict(url='{url}', hf_hub_id=None)"
    image = tmp_path / 'photo.png'
    from PIL import Image
    Image.new('RGB', (64, 64)).save(image)
    with hub.faulty(Fault('stall')):
        assert within(WITHIN, lambda: main(['predict', '-m', 'se_resnet18', '--model-kwarg', overlay,
                                            str(image)])) == 1
    assert 'no answer within' in _one_line(capsys.readouterr().err)

    out = tmp_path / 'out'
    with disk_full_after(100_000):
        assert main(['export', '-m', 'se_resnet18', str(out), '--no-pretrained']) == 1
    assert f'cannot write the export folder {out}' in _one_line(capsys.readouterr().err) and not out.exists()

    # An upload to a Hub that refuses connections: the folder is written, the upload is one line.
    assert main(['export', '-m', 'se_resnet18', str(out), '--no-pretrained', '--repo-id', 'sesk-test/push',
                 '--push']) == 1
    line = _one_line(capsys.readouterr().err)
    assert 'uploading' in line and 'Connection refused' in line and 'hf upload sesk-test/push' in line
    assert (out / 'model.safetensors').is_file()


# --- the Hub: an unreachable Hub fails at once, a warm cache still loads ---------------------------------------------

@pytest.mark.parametrize('how', ['no answer', 'refused'])
@pytest.mark.parametrize('name', ['tag', 'hf-hub'])
def test_a_hub_that_cannot_be_reached_fails_at_once_on_a_cold_cache(hub, request, how, name):
    repo = f'sesk-test/unreachable-{name}-{how.replace(" ", "-")}'
    _publish_hub_weights(hub, repo)
    if how == 'refused':
        request.getfixturevalue('refusing_hub')
    before = len(hub.requests)

    def load():
        if name == 'tag':
            return timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo))
        return timm_sesk.load(f'hf-hub:{repo}')
    start = time.monotonic()
    with hub.faulty(Fault('stall')) if how == 'no answer' else contextlib.nullcontext(), \
            pytest.raises(PretrainedWeightsError) as err:
        within(WITHIN, load)
    assert time.monotonic() - start < 4 * TIMEOUT + 2  # not huggingface_hub's retries (23 s a file; 6 min silent)
    message = str(err.value)
    assert f'hf-hub:{repo}' in message
    assert 'are not in the local Hugging Face cache, and the Hub cannot be reached (' in message
    assert (f'no answer within {TIMEOUT:g} s' if how == 'no answer' else 'Connection refused') in message
    assert f'`hf download {repo}`' in message
    assert len(hub.requests) - before == (1 if how == 'no answer' else 0), 'asked once, one file, no retries'


def test_a_warm_cache_loads_from_a_hub_that_does_not_answer(hub, monkeypatch):
    from huggingface_hub import constants

    repo = 'sesk-test/warm-and-silent'
    _publish_hub_weights(hub, repo)
    expected = timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo))
    monkeypatch.setattr(constants, 'HF_HUB_ETAG_TIMEOUT', TIMEOUT)  # huggingface_hub's own check for a newer file
    with hub.faulty(Fault('stall')):
        model = within(WITHIN, lambda: timm.create_model('sk_resnet18', pretrained=True,
                                                         pretrained_cfg_overlay=dict(hf_hub_id=repo)))
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
