"""Files as timm_sesk writes them: whole or not at all, never through a symlink, never over a file it did not write.

- ``export_folder(out, overwrite)``: the folder an export (``timm_sesk.publish``, ``timm_sesk.deploy``) writes. Its
  files are written into a staging folder inside it, then moved into place one by one with ``os.replace``, so a
  failed export (an exception, Ctrl-C, a full disk) leaves no half-written file and the folder as it was. A folder
  holding files is refused unless ``overwrite``; then the files a previous export wrote (``EXPORT_FILES``, by name)
  go and any other file stays. A link named like an export's file is replaced or removed itself, never followed.
- ``storage_errors(path, action)``: an ``OSError`` of the disk (full, read-only, not writable, a file where a folder
  should be) becomes one ``StorageError`` naming the path and the cause; other errors pass unchanged.
- ``not_a_file(path)``: what a path is where it is not a regular file, so that readers refuse a FIFO (whose ``open``
  blocks until a writer comes), a device or a folder before opening it.
- ``remove_stale(paths)``: partial files of killed runs, once no live process can be writing them.
"""
import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from timm_sesk.errors import ExportFolderError, StorageError

__all__ = ['EXPORT_FILES', 'STALE_AFTER', 'check_export_folder', 'export_folder', 'not_a_file', 'remove_stale',
           'storage_error', 'storage_errors']

PathLike = Union[str, os.PathLike]

# Every file an export writes, in any format: these names in an export's folder are an export's. Readers recognise an
# export by its ENTRY_FILES (deploy.load by deploy.json, timm's hf-hub / local-dir loaders by config.json).
EXPORT_FILES = frozenset({
    'model.safetensors', 'config.json', 'README.md',  # --format hub (timm's save_for_hf, and the model card)
    'model.onnx',  # --format onnx
    'model.xml', 'model.bin',  # --format openvino (OpenVINO IR)
    'deploy.json', 'data_config.json',  # the runtimes' record, and every format's preprocessing
})
ENTRY_FILES = ('deploy.json', 'config.json')
# A partial file or staging folder untouched for this long belongs to no live process: a download writes at least
# every TIMM_SESK_DOWNLOAD_TIMEOUT seconds or fails, and an export is written within minutes.
STALE_AFTER = 24 * 3600
_STAGE_PREFIX, _STAGE_SUFFIX = '.timm_sesk-export-', '.partial'

# The errors of a disk, rather than of what was being written: each with what it means.
_STORAGE_CAUSES = {
    errno.ENOSPC: 'the disk is full',
    errno.EDQUOT: 'the disk quota is used up',
    errno.EFBIG: 'the file grew past the largest size this disk or process may write',
    errno.EROFS: 'the file system is read-only',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'the operation is not permitted there',
    errno.ENOTDIR: 'a file stands where a folder should be',
    errno.EEXIST: 'a file stands where a folder should be',
    errno.EISDIR: 'a folder stands where a file should be',
}


def storage_error(error: OSError, action: str, path: PathLike,
                  fix: str = 'Free space there, or write somewhere else.') -> Optional[StorageError]:
    """The ``StorageError`` an ``OSError`` of the disk means (``cannot {action} {path}: {cause} ({strerror}).
    {fix}``), or None for another error."""
    cause = _STORAGE_CAUSES.get(error.errno) if error.errno is not None else None
    if cause is None:
        return None
    where = f' ({error.filename})' if error.filename and os.fspath(error.filename) != os.fspath(path) else ''
    return StorageError(f'cannot {action} {path}{where}: {cause} ({error.strerror}). {fix}', error.errno,
                        error.filename or path)


@contextlib.contextmanager
def storage_errors(path: PathLike, action: str, fix: str = 'Free space there, or write somewhere else.'
                   ) -> Iterator[None]:
    """Turn an ``OSError`` of the disk inside the block into a ``StorageError`` (``storage_error``); other errors
    pass unchanged.

    Args:
        path: Where the block writes.
        action: What it does there, as the message says it (``write the export folder``).
        fix: The fix the message ends with.
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        translated = storage_error(e, action, path, fix)
        if translated is None:
            raise
        raise translated from e


def not_a_file(path: PathLike) -> Optional[str]:
    """What ``path`` is where it exists and is not a regular file (``a folder``, ``a FIFO``, ...), else None. Links
    are followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent or unreadable: opening it says why
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISSOCK, 'a socket'),
             (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'))
    return next((kind for test, kind in kinds if test(mode)), 'not a regular file')


def remove_stale(paths: Iterable[PathLike], age: float = STALE_AFTER) -> None:
    """Remove those of ``paths`` (partial files or folders of ours) not modified for ``age`` seconds: no live process
    is writing them. Best effort: what cannot be removed stays."""
    now = time.time()
    for path in paths:
        try:
            if now - os.lstat(path).st_mtime < age:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue


def check_export_folder(out: PathLike, overwrite: bool = False) -> Path:
    """Refuse, before any work, a folder an export may not write: a file, or a folder holding files without
    ``overwrite``. Returns the folder as a ``Path``.

    Raises:
        ExportFolderError: It is a file, or holds files and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportFolderError(out)
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not overwrite:
        raise ExportFolderError(out, held)
    return out


@contextlib.contextmanager
def export_folder(out: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """The folder to write an export's files into; they move into ``out`` when the block ends without an error.

    ``out`` is created if needed (and removed again if the export fails and it is still empty). The files an export
    is recognised by (``ENTRY_FILES``) leave first and arrive last, so that a folder caught between two exports is
    no export rather than a mix of two. Writing a file whose name ``EXPORT_FILES`` does not declare is a bug: with
    ``overwrite`` the next export would not know to remove it.

    Args:
        out: The export's folder.
        overwrite: Replace the export in a folder that holds files: the folder's ``EXPORT_FILES`` go, other files
            stay. Without it, a folder that holds any file is refused.

    Raises:
        ExportFolderError: ``out`` is a file, or holds files and ``overwrite`` is False.
        StorageError: The disk refused to write (full, read-only, not writable).
    """
    out = check_export_folder(out, overwrite)
    created = not out.exists()
    with storage_errors(out, 'write the export folder'):
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX, suffix=_STAGE_SUFFIX, dir=out))  # same file system
    done = False
    try:
        with storage_errors(out, 'write the export folder'):  # the writers' errors, and the moves'
            yield stage
            _commit(stage, out, overwrite)
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not done:
            with contextlib.suppress(OSError):  # not empty: someone else's files arrived meanwhile
                out.rmdir()


def _commit(stage: Path, out: Path, overwrite: bool) -> None:
    """Move the staged files into ``out``, removing a previous export's files first where ``overwrite``."""
    new = sorted(p.name for p in stage.iterdir())
    undeclared = sorted(set(new) - EXPORT_FILES)
    if undeclared:
        raise RuntimeError(f'an export wrote {", ".join(undeclared)}, which timm_sesk.files.EXPORT_FILES does not '
                           'declare; declare it there, so that overwriting the export removes it')
    held = [p for p in out.iterdir() if p != stage]
    if held and not overwrite:  # files arrived while the export was written
        raise ExportFolderError(out, sorted(p.name for p in held))
    if overwrite:
        remove_stale(out.glob(f'{_STAGE_PREFIX}*{_STAGE_SUFFIX}'))  # killed exports' staging folders
        old = [out / name for name in EXPORT_FILES if os.path.lexists(out / name)]
        for path in sorted(old, key=lambda p: p.name not in ENTRY_FILES):  # the entry files first
            if path.name in ENTRY_FILES or path.name not in new:  # the others are replaced in one step below
                path.unlink()  # a link itself, not what it points to
    for name in sorted(new, key=lambda n: n in ENTRY_FILES):  # the entry files last
        os.replace(stage / name, out / name)  # over a link, the link itself is replaced
