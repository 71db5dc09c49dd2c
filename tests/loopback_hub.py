"""A stand-in for the Hugging Face Hub on 127.0.0.1, for testing the real download path without a network.

It serves what ``huggingface_hub.hf_hub_download`` asks for, ``/{org}/{repo}/resolve/{revision}/{filename}``, with
the ``X-Repo-Commit`` and ``ETag`` headers the client reads, and answers misses with ``X-Error-Code: RepoNotFound``
or ``EntryNotFound`` as the Hub does. Plain files for URL weight sources are served under ``/files/{name}``. For
``HfApi.create_repo`` and ``upload_folder`` it implements the repo-creation, YAML-validation, preupload and commit
endpoints, with every file uploaded in the "regular" (inline, base64) mode.

Network faults, one at a time (``with hub.faulty(Fault(...))``), on the file requests (HEAD and GET of Hub files and
plain files): ``stall`` (accept and never answer, or stop mid-body), ``cut`` (close the connection mid-body),
``drip`` (send the body a byte at a time, slowly) and ``lie`` (announce another Content-Length, or send other bytes).

``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` when it is imported, so ``start_session_hub`` must run
before anything imports it (timm does, on import).
"""
import atexit
import base64
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union
from urllib.parse import unquote

# Given a repo id and filename the Hub does not have yet, return its bytes (publishing on demand), or None.
Provider = Callable[[str, str], Optional[bytes]]


@dataclass(frozen=True)
class Fault:
    """How the server misbehaves on file requests.

    Attributes:
        kind: ``stall`` (send ``at`` of the body, then nothing: at 0 not even a status line), ``cut`` (send ``at`` of
            the body, then close), ``drip`` (one byte every ``interval`` seconds), ``lie`` (announce ``length``
            instead of the true Content-Length, and/or send ``data`` instead of the file).
        at: The fraction of the body sent before a stall or cut.
        interval: Seconds between a drip's bytes.
        length: The Content-Length a lie announces.
        data: The bytes a lie sends.
        methods: The request methods it applies to (``('GET',)``: the Hub answers HEAD and fails the download).
    """

    kind: str
    at: float = 0.0
    interval: float = 0.1
    length: Optional[int] = None
    data: Optional[bytes] = None
    methods: Tuple[str, ...] = ('HEAD', 'GET')


class LoopbackHub:
    """A threaded HTTP server holding Hub repositories and plain files in a folder."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        self.requests: List[Tuple[str, str]] = []
        self.delay = 0.0  # seconds to stall each file body, to make concurrent downloads overlap
        self.provider: Optional[Provider] = None
        self.fault: Optional[Fault] = None
        self._released = threading.Event()  # ends every stall and drip (a fault's end, the server's stop)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
        self._server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    @contextlib.contextmanager
    def faulty(self, fault: Fault) -> Iterator[Fault]:
        """Misbehave as ``fault`` says inside the block; stalled and dripping answers end with it."""
        self._released.clear()
        self.fault = fault
        try:
            yield fault
        finally:
            self.fault = None
            self._released.set()

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / 'repos' / repo_id

    def publish(self, repo_id: str, filename: str, data: Union[bytes, Path]) -> Path:
        """Put a file into a Hub repository (creating it)."""
        return self._write(self.repo_dir(repo_id) / filename, data)

    def publish_url(self, name: str, data: Union[bytes, Path]) -> str:
        """Serve a plain file; returns its URL."""
        self._write(self.root / 'files' / name, data)
        return f'{self.url}/files/{name}'

    def remove_repo(self, repo_id: str) -> None:
        for path in sorted(self.repo_dir(repo_id).rglob('*'), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()

    @staticmethod
    def _write(path: Path, data: Union[bytes, Path]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + '.tmp')
        tmp.write_bytes(data.read_bytes() if isinstance(data, Path) else data)
        tmp.replace(path)
        return path

    def _commit(self, repo_id: str) -> str:
        """A commit id that changes whenever a file of the repository does, as a new upload makes a new commit on
        the Hub; the client's cache keys snapshots by it, so a republished file must not keep the old id."""
        state = [repo_id]
        for path in sorted(self.repo_dir(repo_id).rglob('*')):
            if path.is_file():
                stat = path.stat()
                state.append(f'{path.relative_to(self.repo_dir(repo_id))}:{stat.st_size}:{stat.st_mtime_ns}')
        return hashlib.sha1('\n'.join(state).encode()).hexdigest()

    def _resolve(self, url_path: str) -> Tuple[int, Optional[Path], dict]:
        parts = unquote(url_path.split('?', 1)[0]).strip('/').split('/')
        if len(parts) >= 2 and parts[0] == 'files':
            path = self.root / 'files' / '/'.join(parts[1:])
            if path.is_file():
                return 200, path, {}
            return 404, None, {}
        if len(parts) >= 5 and parts[2] == 'resolve':
            repo_id, filename = '/'.join(parts[:2]), '/'.join(parts[4:])
            path = self.repo_dir(repo_id) / filename
            if not path.is_file() and self.provider is not None:
                with self._lock:  # publish once even if two clients ask at the same time
                    if not path.is_file():
                        data = self.provider(repo_id, filename)
                        if data is not None:
                            self.publish(repo_id, filename, data)
            if not self.repo_dir(repo_id).is_dir():
                return 404, None, {'X-Error-Code': 'RepoNotFound', 'X-Error-Message': 'Repository not found'}
            if not path.is_file():
                return 404, None, {'X-Error-Code': 'EntryNotFound', 'X-Error-Message': 'Entry not found'}
            return 200, path, {'X-Repo-Commit': self._commit(repo_id)}
        return 404, None, {}

    def _api(self, path: str, body: bytes) -> Tuple[int, dict]:
        parts = path.split('?', 1)[0].strip('/').split('/')
        if parts[:3] == ['api', 'repos', 'create']:
            request = json.loads(body)
            repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
            self.repo_dir(repo_id).mkdir(parents=True, exist_ok=True)
            return 200, {'url': f'{self.url}/{repo_id}', 'name': repo_id}
        if parts[:2] == ['api', 'validate-yaml']:
            return 200, {'errors': [], 'warnings': []}
        if len(parts) == 6 and parts[:2] == ['api', 'models'] and parts[4] in ('preupload', 'commit'):
            repo_id = '/'.join(parts[2:4])
            if not self.repo_dir(repo_id).is_dir():
                return 404, {'error': 'Repository not found'}
            if parts[4] == 'preupload':
                files = json.loads(body)['files']
                return 200, {'files': [{'path': f['path'], 'uploadMode': 'regular', 'shouldIgnore': False}
                                       for f in files]}
            for line in body.splitlines():
                item = json.loads(line)
                if item['key'] == 'file':
                    self.publish(repo_id, item['value']['path'], base64.b64decode(item['value']['content']))
            commit = hashlib.sha1(body).hexdigest()
            return 200, {'commitUrl': f'{self.url}/{repo_id}/commit/{commit}', 'commitOid': commit}
        return 404, {'error': f'no such endpoint {path}'}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _respond(self, with_body: bool) -> None:
                hub.requests.append((self.command, self.path))
                status, path, headers = hub._resolve(self.path)
                if path is None:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header('Content-Length', '0')
                    self.end_headers()
                    return
                data = path.read_bytes()
                start = 0
                range_header = self.headers.get('Range', '')
                if range_header.startswith('bytes=') and range_header[6:].split('-')[0].isdigit():
                    start = int(range_header[6:].split('-')[0])
                fault = hub.fault if hub.fault is not None and self.command in hub.fault.methods else None
                if fault is not None and fault.kind == 'stall' and fault.at == 0:
                    hub._released.wait(60)  # accepted, never answered
                    self.close_connection = True
                    return
                body = fault.data if fault is not None and fault.data is not None else data[start:]
                self.send_response(206 if start else 200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header('ETag', f'"{hashlib.sha256(data).hexdigest()}"')
                length = fault.length if fault is not None and fault.length is not None else len(body)
                self.send_header('Content-Length', str(length))
                self.send_header('Content-Type', 'application/octet-stream')
                self.end_headers()
                if with_body:
                    if hub.delay:
                        time.sleep(hub.delay)
                    self._send(body, fault)

            def _send(self, body: bytes, fault: Optional[Fault]) -> None:
                try:
                    if fault is None or fault.kind == 'lie':
                        self.wfile.write(body)
                    elif fault.kind == 'drip':
                        for i in range(len(body)):
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            if hub._released.wait(fault.interval):
                                break
                    else:  # stall or cut, after part of the body
                        self.wfile.write(body[:int(len(body) * fault.at)])
                        self.wfile.flush()
                        if fault.kind == 'stall':
                            hub._released.wait(60)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass
                self.close_connection = True

            def do_HEAD(self):
                self._respond(with_body=False)

            def do_GET(self):
                self._respond(with_body=True)

            def do_POST(self):
                hub.requests.append((self.command, self.path))
                body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
                status, payload = hub._api(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 404:
                    self.send_header('X-Error-Code', 'RepoNotFound')
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def start_session_hub() -> LoopbackHub:
    """Start a hub for this process and point huggingface_hub and torch.hub at it and at fresh caches.

    Must run before ``huggingface_hub`` is imported. Child processes inherit the environment.
    """
    import sys
    if 'huggingface_hub' in sys.modules:
        raise RuntimeError('start_session_hub() must run before huggingface_hub is imported')
    root = Path(tempfile.mkdtemp(prefix='timm_sesk_hub_'))
    # Published weights and the client caches take gigabytes over a full run: remove them when the process ends.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    hub = LoopbackHub(root / 'server')
    os.environ['HF_ENDPOINT'] = hub.url
    os.environ['HF_HUB_CACHE'] = str(root / 'hf_cache')
    os.environ['TORCH_HOME'] = str(root / 'torch_home')
    os.environ['HF_HUB_DISABLE_TELEMETRY'] = '1'
    os.environ.pop('HF_HUB_OFFLINE', None)
    os.environ.pop('HF_TOKEN', None)
    return hub
