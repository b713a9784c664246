"""File operations on local paths and URLs (`gs://`, `s3://`, `file://`), through etils.epath.

Paths stay strings everywhere else; every read and write of a workdir, export, pseudo-label
file or results goes through here, so `--workdir=gs://bucket/run` reaches the bucket instead
of a local `./gs:` folder. `file://` URLs (which epath does not know) name local paths.
Local writes of whole files are atomic (a temporary file renamed over the target); object
stores write whole objects, which is atomic there.
"""
import os
import posixpath
import shutil

from etils import epath

_FILE_SCHEME = "file://"


def is_remote(path: str) -> bool:
  """True for a URL (`gs://b/x`, `file:///x`): no local locks or renames are relied on."""
  return "://" in str(path)


def native(path: str) -> str:
  """The string to hand to libraries that take local paths and their own URLs (`gs://`):
  `file:///x` -> `/x`, everything else unchanged."""
  path = str(path)
  return path[len(_FILE_SCHEME):] if path.startswith(_FILE_SCHEME) else path


def as_path(path: str) -> epath.Path:
  """An `epath.Path` (what Orbax takes): absolute for local paths, URLs left alone."""
  return epath.Path(absolute(native(path)))


def absolute(path: str) -> str:
  """`os.path.abspath` for local paths; URLs unchanged (never `<cwd>/gs:/b/x`)."""
  path = str(path)
  return path if is_remote(path) else os.path.abspath(path)


def join(path: str, *names: str) -> str:
  """`path/name/...` as a string; `/` separators for URLs."""
  path = str(path)
  return posixpath.join(path, *names) if is_remote(path) else os.path.join(path, *names)


def exists(path: str) -> bool:
  return as_path(path).exists()


def isdir(path: str) -> bool:
  return as_path(path).is_dir()


def listdir(path: str) -> list[str]:
  """Sorted names in directory `path` ([] if it does not exist)."""
  directory = as_path(path)
  return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def makedirs(path: str):
  """Creates `path` and its parents; nothing if it exists."""
  as_path(path).mkdir(parents=True, exist_ok=True)


def rmtree(path: str):
  """Deletes directory `path` with its contents; nothing if it does not exist."""
  if is_remote(path):
    if exists(path):
      as_path(path).rmtree()
  else:
    shutil.rmtree(path, ignore_errors=True)


def rename(source: str, target: str):
  """Moves `source` to `target`, replacing a file there (atomic on local filesystems)."""
  if is_remote(source) or is_remote(target):
    as_path(source).replace(as_path(target))
  else:
    os.replace(source, target)


def open_file(path: str, mode: str = "r"):
  """A file object for `path` (`mode` as for `open`)."""
  return as_path(path).open(mode)


def read_text(path: str) -> str:
  return as_path(path).read_text()


def read_bytes(path: str) -> bytes:
  return as_path(path).read_bytes()


def write_text(path: str, text: str):
  """Writes `text` to `path` whole: readers see the old or the new file, never a part."""
  write_bytes(path, text.encode())


def write_bytes(path: str, data: bytes):
  """Writes `data` to `path` whole (local: a temporary file renamed over `path`)."""
  path = native(path)
  if is_remote(path):
    as_path(path).write_bytes(data)
    return
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
