"""Storage by URI: where everything that workers write and other processes read lives (``--storage``).

A storage is a folder named by a URI: a local path (the default: the cache folder), or ``s3://bucket/prefix``,
``gs://...``, ``hdfs://...`` through pyarrow's file systems, or any other fsspec protocol (``memory://``, ``az://``
with adlfs, ...) through pyarrow's ``FSSpecHandler``. Credentials and endpoints come from the file system's usual
configuration (for S3: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL`` or an instance role;
pyarrow's URI options such as ``?endpoint_override=HOST:PORT&scheme=http`` also work), and must be set on every node.

What lives there (``layout``): the prepared arrays (``prepared/``), the pretraining and evaluation-network cache
(``pretrain-<key>.pt``, ``network-<key>.pt``), the stages' checkpoints (``checkpoints/``), Ray Train / Tune storage
and the search records (``runs/<run>/``). Writes are atomic: a local file goes through a temp file renamed into place,
an object store's upload only becomes visible once complete; so a reader never sees half a file. Nothing here
decides who writes a shared key: that is the run layer's (``benchmark.ray_runner``'s key leases).
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs
import torch

from benchmark.records import atomic_path


def is_uri(location: str | os.PathLike) -> bool:
    """Whether ``location`` names a remote file system (``scheme://``), not a local path (``file://`` is local)."""
    scheme = urlsplit(str(location)).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def normalise(location: str | os.PathLike) -> str:
    """The canonical form of a storage location: remote URIs as given (no trailing slash), local paths absolute."""
    text = str(location)
    if is_uri(text):
        return text.rstrip("/")
    if text.startswith("file://"):
        text = urlsplit(text).path
    return str(Path(text).expanduser().resolve())


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location`` / ``parts`` (the query of a URI such as ``?endpoint_override=...`` stays at the end)."""
    text = normalise(location)
    if not is_uri(text):
        return str(Path(text, *parts))
    head, _, query = text.partition("?")
    path = "/".join([head.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{path}?{query}" if query else path


def sibling(location: str | os.PathLike, name: str) -> str:
    """The file ``name`` in the folder of ``location``."""
    text = normalise(location)
    if not is_uri(text):
        return str(Path(text).with_name(name))
    head, _, query = text.partition("?")
    path = f"{head.rsplit('/', 1)[0]}/{name}"
    return f"{path}?{query}" if query else path


def local_path(location: str | os.PathLike) -> Path | None:
    """The local path ``location`` names, or None for a remote URI."""
    return None if is_uri(location) else Path(normalise(location))


@functools.lru_cache(maxsize=32)
def _filesystem(root: str) -> pafs.FileSystem:
    try:
        filesystem, _ = pafs.FileSystem.from_uri(root)
        return filesystem
    except (pafs.ArrowInvalid, ValueError) as arrow_error:  # not one of pyarrow's own: an fsspec protocol
        try:
            import fsspec

            return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(urlsplit(root).scheme)))
        except (ImportError, ValueError) as exc:
            raise ValueError(f"storage {root!r}: no pyarrow or fsspec file system for this URI ({arrow_error}; {exc})") from None


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(pyarrow file system, path inside it) of ``location`` (what Ray's ``storage_filesystem`` / ``storage_path`` take)."""
    text = normalise(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), text
    head, _, query = text.partition("?")
    parts = urlsplit(head)
    filesystem = _filesystem(f"{parts.scheme}://{parts.netloc}" + (f"?{query}" if query else ""))
    return filesystem, f"{parts.netloc}{parts.path}"  # bucket/key: pyarrow's and fsspec's paths alike


def exists(location: str | os.PathLike) -> bool:
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def size(location: str | os.PathLike) -> int | None:
    """The file's size in bytes, or None when there is none."""
    filesystem, path = resolve(location)
    info = filesystem.get_file_info(path)
    return None if info.type == pafs.FileType.NotFound else int(info.size or 0)


def read_bytes(location: str | os.PathLike) -> bytes:
    """The file's content (FileNotFoundError when there is none)."""
    filesystem, path = resolve(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{location}: no such file") from None
        raise


def sha256(location: str | os.PathLike, *, chunk: int = 1 << 22) -> str:
    """The SHA-256 of the file's content (hex), read in chunks (checkpoints are large)."""
    digest = hashlib.sha256()
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def copy(source: str | os.PathLike, location: str | os.PathLike) -> None:
    """Copy the file ``source`` to ``location`` (either may be a path or a URI), atomically at the destination."""
    write_bytes(location, read_bytes(source))


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically: readers see the old file, or none, or all of the new one."""
    local = local_path(location)
    if local is not None:
        with atomic_path(local) as tmp:
            tmp.write_bytes(data)
        return
    filesystem, path = resolve(location)
    filesystem.create_dir(path.rpartition("/")[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:  # an object appears once its upload completes
        stream.write(data)


def delete(location: str | os.PathLike) -> None:
    """Remove the file if it is there."""
    filesystem, path = resolve(location)
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        pass
    except OSError:
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            raise


def list_files(location: str | os.PathLike) -> list[str]:
    """Names of the files directly in the folder (empty when it does not exist)."""
    filesystem, path = resolve(location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except FileNotFoundError:
        return []
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)


def save_torch(obj: Any, location: str | os.PathLike) -> None:
    """``torch.save`` to ``location``, atomically."""
    local = local_path(location)
    if local is not None:
        with atomic_path(local) as tmp:
            torch.save(obj, tmp)
        return
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(location, buffer.getvalue())


def load_torch(location: str | os.PathLike, **kwargs) -> Any:
    """``torch.load`` of ``location`` (``kwargs``: ``map_location``, ``weights_only``); FileNotFoundError when absent."""
    local = local_path(location)
    if local is not None:
        return torch.load(local, **kwargs)
    return torch.load(io.BytesIO(read_bytes(location)), **kwargs)


def upload_folder(local: Path, location: str | os.PathLike, *, last: str | None = None) -> None:
    """Copy the files of the local folder ``local`` to ``location``; ``last`` (a file name) is written after every
    other, so a reader that finds it finds the whole folder."""
    names = sorted(p.name for p in Path(local).iterdir() if p.is_file())
    for name in [n for n in names if n != last] + ([last] if last in names else []):
        write_bytes(join(location, name), (Path(local) / name).read_bytes())


def download_folder(location: str | os.PathLike, local: Path) -> None:
    """Copy the files of the storage folder ``location`` into the local folder ``local`` (created)."""
    Path(local).mkdir(parents=True, exist_ok=True)
    for name in list_files(location):
        (Path(local) / name).write_bytes(read_bytes(join(location, name)))


def node_cache_dir() -> Path:
    """This node's own folder for local copies of remote files (the prepared arrays a worker memory-maps):
    ``MEDSSL_NODE_CACHE``, else a folder under the system's temp directory."""
    configured = os.environ.get("MEDSSL_NODE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(tempfile.gettempdir()) / f"medssl-bench-node-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
