"""Files as timm_sesk reads and writes them: disk errors said as such, non-files refused, partial files cleaned up.

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
import time
from typing import Iterable, Iterator, Optional, Union

from timm_sesk.errors import StorageError

__all__ = ['STALE_AFTER', 'not_a_file', 'remove_stale', 'storage_error', 'storage_errors']

PathLike = Union[str, os.PathLike]

# A partial file untouched for this long belongs to no live process: a download writes at least every
# TIMM_SESK_DOWNLOAD_TIMEOUT seconds or fails.
STALE_AFTER = 24 * 3600

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
