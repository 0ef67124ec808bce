"""Files on disk behind the real datasets: find them, download them, verify them.

Every file-backed data module goes through :func:`require_files`, so missing
and corrupt data fail the same way everywhere, with one of two errors whose
message tells the user what to do (never a traceback from deep inside
torchvision or urllib):

* :class:`DataUnavailableError`: files are missing and could not be downloaded
  (the machine may be offline). The message names the files, the folder they
  must be put in, the official URLs and how to point genbench at a copy
  already on disk.
* :class:`ChecksumError`: a file is present but its digest is not the official
  one (a truncated download, a different release). The message names the
  file, both digests and the URL to download it again from.

Checksums are verified on every load (not only after a download): a silently
different file would make the published comparison meaningless, and hashing
the largest file in the suite takes well under a second.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from ..core.errors import ChecksumError, DataUnavailableError

HOW_TO_POINT = (
    "To use a copy already on disk, set the data root with the config key `data.root=PATH` "
    "or the GENBENCH_DATA environment variable (inside the project, `make data-link` links "
    "../shared/data into datasets/)."
)


class RemoteFile(NamedTuple):
    """One official file: its name, where to get it (one URL or mirrors, official first), its digest."""

    filename: str
    url: str | Sequence[str]
    algo: str  # "md5" or "sha1"
    digest: str

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url,) if isinstance(self.url, str) else tuple(self.url)


def file_digest(path: str | os.PathLike, algo: str = "md5", chunk: int = 1 << 22) -> str:
    """Hex digest of a file, read in chunks (the archives are up to 1.3 GB)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, algo: str, expected: str, url: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless the file's digest is ``expected``."""
    actual = file_digest(path, algo)
    if actual != expected.lower():
        where = f" from {url}" if url else ""
        raise ChecksumError(
            f"{Path(path).name} is corrupt or not the official file: {path} has {algo} {actual}, "
            f"but the official file has {algo} {expected}. Delete it and download it again{where} "
            "(genbench downloads missing files itself when download is allowed)."
        )


def download_file(url: str, path: str | os.PathLike, timeout: float = 60) -> None:
    """Download ``url`` to ``path`` atomically (a partial download never looks like data).

    This is the only function that touches the network, so tests replace it.
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def require_files(folder: str | os.PathLike, files: Iterable[RemoteFile], download: bool = True,
                  dataset: str = "the dataset") -> dict[str, Path]:
    """Make sure every file is in ``folder`` and is the official file; return their paths.

    Missing files are downloaded when ``download`` is true (each URL in turn;
    any failure is caught, and once a file cannot be had from any of its URLs
    no further file is tried, since the error is then certain); files still missing raise
    :class:`DataUnavailableError`, then every file's checksum is verified
    (:class:`ChecksumError`).
    """
    folder, files = Path(folder).absolute(), list(files)
    errors: list[str] = []
    gave_up = False
    for f in files:
        if gave_up or not download or (folder / f.filename).is_file():
            continue
        for url in f.urls:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                download_file(url, folder / f.filename)
                break
            except Exception as err:  # noqa: BLE001 -- any failure means "not available"
                errors.append(f"{type(err).__name__}: {err}")
        else:
            gave_up = True  # no URL worked: the error below is certain, so stop trying further files
    missing = [f for f in files if not (folder / f.filename).is_file()]
    if missing:
        why = (f"downloading them failed ({'; '.join(dict.fromkeys(errors))}); this machine may be offline" if download
               else "downloading is turned off (download=False)")
        raise DataUnavailableError(
            f"{dataset} data is missing: {', '.join(f.filename for f in missing)} not found in {folder}, "
            f"and {why}. Download the official file(s) from "
            f"{', '.join(f.urls[0] for f in missing)} and put them in {folder}. {HOW_TO_POINT}"
        )
    for f in files:
        verify(folder / f.filename, f.algo, f.digest, f.urls[0])
    return {f.filename: folder / f.filename for f in files}


@contextmanager
def torchvision_errors(dataset: str, folder: str | os.PathLike):
    """Turn any failure inside a torchvision reader into a :class:`ChecksumError` with advice.

    Used after :func:`require_files` has verified the downloaded files, so what
    remains to go wrong is what torchvision extracted or derived from them.
    """
    try:
        yield
    except (DataUnavailableError, ChecksumError):
        raise
    except Exception as err:  # noqa: BLE001
        raise ChecksumError(
            f"{dataset} files in {Path(folder).absolute()} could not be read by torchvision "
            f"({type(err).__name__}: {err}). The archives passed their checksums, so the files extracted "
            "from them are damaged or from another release: delete the extracted files (keep the verified "
            f"archives) and load again. {HOW_TO_POINT}"
        ) from None
