"""The published weight files of LPIPS and FID: where they come from, where they live, checks.

Import-light on purpose (standard library only): ``sirem weights status`` and ``--help`` never
load torch through it.

Three files, each with its published URL, SHA-256 and size (:data:`REGISTRY`):

* ``alexnet-owt-7be5be79.pth``: torchvision's AlexNet (ImageNet) state dict, 244,408,911 bytes;
* ``alex.pth``: the lpips package's v0.1 linear heads, 6,009 bytes;
* ``pt_inception-2015-12-05-6726825d.pth``: pytorch-fid's FID Inception-v3, 95,628,359 bytes.

All three are verified by their **full** SHA-256. The values are the ones other projects pin
for these exact URLs (none of the three upstreams publishes a full hash itself), checked for
consistency with what each upstream does publish:

* AlexNet ``7be5be79 1159472b ...``: torchvision publishes the first 8 hex digits in the file
  name (torch hub's ``check_hash`` convention); the full value and size are those of the file's
  copies on the Hugging Face hub (whose LFS pointers carry SHA-256 and size) and of projects
  that pin the download.pytorch.org file.
* LPIPS heads ``df73285e ...``: computed from ``lpips/weights/v0.1/alex.pth`` in the lpips 0.1.4
  wheel on PyPI, matching the hash in that wheel's ``RECORD``; projects pin the same value for
  the GitHub raw URL.
* Inception ``6726825d 0af5f729 ...``: pytorch-fid publishes the first 8 hex digits in the file
  name; the full value is pinned for the pytorch-fid release URL in public code, the size is
  that of the file's LFS copies.

An entry without a full hash (only possible through an override, see below) falls back to the
hash prefix embedded in its file name (``name-<8+ hex digits>.ext``, torch hub's convention); an
entry with neither is never downloaded and a file under its name is never accepted.

Lookup (unchanged from :mod:`~sirem_cli.metrics.perceptual`): ``weights_dir`` first, then the
torch hub cache ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``),
the folder torchvision, lpips and pytorch-fid use. :func:`resolve_weight_files` adds

* verification of every file it hands out (size, then SHA-256; a wrong file is refused with one
  line naming it, the expected and actual hash and the fix, and is never loaded);
* fetch on first use: a missing file is downloaded from its URL into the hub cache, unless
  offline (``offline=True``, or ``SIREM_OFFLINE`` / ``HF_HUB_OFFLINE`` set to 1/true/yes/on).
  One attempt, a short timeout (:data:`DEFAULT_TIMEOUT_S`, ``SIREM_DOWNLOAD_TIMEOUT``), streamed
  to a temporary file in the target folder, verified, then renamed into place; nothing else is
  ever left there. Failures give one line with the manual alternative.

For tests, ``SIREM_WEIGHTS_REGISTRY`` may name a JSON file ``{"files": {NAME: {"url": ...,
"sha256": ..., "size": ...}}}`` whose fields replace those of the built-in entries of the same
names (``null`` clears a hash or size); every function also takes a ``registry`` argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sirem_cli.errors import BackendUnavailable, InputError

__all__ = [
    "ALEXNET_FILE",
    "DEFAULT_TIMEOUT_S",
    "INCEPTION_FILE",
    "LPIPS_HEADS_FILE",
    "METRIC_FILES",
    "REGISTRY",
    "FileStatus",
    "WeightFile",
    "WeightsDownloadError",
    "WeightsUnavailable",
    "WeightsVerificationError",
    "download_weight_file",
    "expected_digest",
    "fetch_weights",
    "find_weight_files",
    "get_registry",
    "hub_checkpoint_dir",
    "is_offline",
    "resolve_weight_files",
    "search_dirs",
    "sha256_file",
    "status",
    "verify_file",
]

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_HEADS_FILE = "alex.pth"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"

#: Seconds a download waits for the connection and for each read (one attempt, no retries).
DEFAULT_TIMEOUT_S = 20.0

#: Bytes read per chunk while streaming a download.
CHUNK_BYTES = 1 << 20

#: Progress callback of a download: ``progress(file_name, bytes_done, bytes_total)``.
DownloadProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class WeightFile:
    """One published weight file.

    Attributes:
        name: file name, as torch hub caches it.
        url: published download URL.
        sha256: full SHA-256 (64 lower-case hex digits), or None when only the prefix in the
            file name is known.
        size: size in bytes, or None when unknown.
        description: what the file is, for messages and tables.
    """

    name: str
    url: str
    sha256: str | None
    size: int | None
    description: str


REGISTRY: dict[str, WeightFile] = {
    ALEXNET_FILE: WeightFile(
        ALEXNET_FILE,
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        244_408_911,
        "torchvision's AlexNet weights, the LPIPS trunk",
    ),
    LPIPS_HEADS_FILE: WeightFile(
        LPIPS_HEADS_FILE,
        "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        6_009,
        "the lpips package's v0.1 AlexNet heads, lpips/weights/v0.1/alex.pth",
    ),
    INCEPTION_FILE: WeightFile(
        INCEPTION_FILE,
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        95_628_359,
        "pytorch-fid's FID Inception-v3 weights",
    ),
}

#: Weight files each network-based metric needs.
METRIC_FILES: dict[str, tuple[str, ...]] = {
    "lpips": (ALEXNET_FILE, LPIPS_HEADS_FILE),
    "fid": (INCEPTION_FILE,),
}

_OFFLINE_VARS = ("SIREM_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class WeightsUnavailable(BackendUnavailable):
    """Pretrained weight files for a metric are missing (or, in subclasses, refused).

    Attributes:
        metric: ``"lpips"`` or ``"fid"`` (``""`` when not tied to one metric).
        missing: the missing (or refused) file names.
        searched: the folders searched, in order.
    """

    def __init__(
        self,
        metric: str,
        missing: Sequence[str],
        searched: Sequence[Path],
        *,
        message: str | None = None,
        registry: Mapping[str, WeightFile] | None = None,
        offline: bool = False,
    ) -> None:
        self.metric = metric
        self.missing = tuple(missing)
        self.searched = tuple(searched)
        super().__init__(
            message or _missing_message(metric, missing, searched, registry, offline=offline)
        )


class WeightsVerificationError(WeightsUnavailable):
    """A weight file's size or SHA-256 differs from the published one; it is never loaded.

    Attributes:
        path: the refused file (for a download: the URL's target).
        expected: expected SHA-256 (or its prefix).
        actual: actual SHA-256.
    """

    def __init__(self, metric: str, path: Path, expected: str, actual: str, message: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(metric, [path.name], [path.parent], message=message)


class WeightsDownloadError(WeightsUnavailable):
    """A weight file could not be downloaded (unreachable URL, HTTP error, unwritable cache)."""


def _label(metric: str) -> str:
    return metric.upper() if metric else "weights"


def _missing_message(
    metric: str,
    missing: Sequence[str],
    searched: Sequence[Path],
    registry: Mapping[str, WeightFile] | None,
    *,
    offline: bool = False,
) -> str:
    reg = registry if registry is not None else get_registry()
    files = ", ".join(
        f"{name} ({reg[name].description})" if name in reg else name for name in missing
    )
    urls = " and ".join(reg[name].url for name in missing if name in reg)
    where = ", ".join(str(p) for p in searched)
    hub = searched[-1] if searched else hub_checkpoint_dir()
    fetch = f"sirem weights fetch --metric {metric}" if metric else "sirem weights fetch"
    return (
        f"{_label(metric)} unavailable{' (offline: nothing downloaded)' if offline else ''}: "
        f"missing {files}; searched {where}; "
        f"download {urls} into {hub} (`{fetch}` does it on an online machine) "
        "or pass --weights-dir DIR holding them"
    )


# --------------------------------------------------------------------------------------------
# Registry, folders, offline mode
# --------------------------------------------------------------------------------------------


def get_registry(registry: Mapping[str, WeightFile] | None = None) -> dict[str, WeightFile]:
    """The registry in force: ``registry`` if given, else :data:`REGISTRY` with the entries of
    ``$SIREM_WEIGHTS_REGISTRY`` (a JSON file) applied.

    Raises:
        InputError: the override file is unreadable, not JSON of the expected form, or names a
            file the registry does not know.
    """
    if registry is not None:
        return dict(registry)
    merged = dict(REGISTRY)
    path = os.environ.get("SIREM_WEIGHTS_REGISTRY")
    if not path:
        return merged
    where = f"SIREM_WEIGHTS_REGISTRY={path}"
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: cannot read the weights registry ({exc})") from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        raise InputError(f'{where}: expected {{"files": {{NAME: {{"url", "sha256", "size"}}}}}}')
    allowed = {"url", "sha256", "size", "description"}
    for name, fields in files.items():
        if name not in merged:
            raise InputError(f"{where}: unknown weight file {name!r}; known: {', '.join(merged)}")
        if not isinstance(fields, dict) or not set(fields) <= allowed:
            raise InputError(f"{where}: {name}: expected an object with keys {sorted(allowed)}")
        merged[name] = dataclasses.replace(merged[name], **fields)
    return merged


def hub_checkpoint_dir() -> Path:
    """The folder torch.hub keeps downloaded checkpoints in, computed without torch.hub.

    ``$TORCH_HOME/hub/checkpoints`` when TORCH_HOME is set, otherwise
    ``$XDG_CACHE_HOME/torch/hub/checkpoints`` (XDG_CACHE_HOME defaults to ``~/.cache``).
    """
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        base = Path(torch_home).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
        base = Path(cache).expanduser() / "torch"
    return base / "hub" / "checkpoints"


def search_dirs(weights_dir: Path | str | None) -> list[Path]:
    """Folders searched for weight files, in order: ``weights_dir`` (if any), the hub cache."""
    dirs = [Path(weights_dir).expanduser()] if weights_dir is not None else []
    hub = hub_checkpoint_dir()
    if hub not in dirs:
        dirs.append(hub)
    return dirs


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``SIREM_OFFLINE`` or ``HF_HUB_OFFLINE`` is set true."""
    if offline is not None:
        return bool(offline)
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in _OFFLINE_VARS)


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    raw = os.environ.get("SIREM_DOWNLOAD_TIMEOUT")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"SIREM_DOWNLOAD_TIMEOUT={raw!r}: not a number of seconds") from None
        if value > 0:
            return value
    return DEFAULT_TIMEOUT_S


def _metric_of(name: str) -> str:
    return next((m for m, names in METRIC_FILES.items() if name in names), "")


def _files_of(metric: str) -> tuple[str, ...]:
    if metric not in METRIC_FILES:
        raise InputError(f"no weight files for metric {metric!r}; choose from lpips, fid")
    return METRIC_FILES[metric]


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def expected_digest(entry: WeightFile) -> tuple[str | None, bool]:
    """The SHA-256 a file must have: ``(hex, True)`` for a full hash, ``(prefix, False)`` for
    the prefix in its file name (torch hub's convention), ``(None, False)`` when neither."""
    if entry.sha256:
        return entry.sha256.strip().lower(), True
    match = _HASH_IN_NAME.search(entry.name)
    return (match.group(1), False) if match else (None, False)


def _describe_expected(entry: WeightFile) -> str:
    digest, full = expected_digest(entry)
    return str(digest) if full else f"{digest}... (prefix from the file name)"


_digest_cache: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path | str) -> str:
    """SHA-256 of a file (hex), memoized per (path, size, mtime, inode) within the process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _digest_cache:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                h.update(chunk)
        _digest_cache[key] = h.hexdigest()
    return _digest_cache[key]


def _digest_ok(entry: WeightFile, actual: str) -> bool:
    digest, full = expected_digest(entry)
    if digest is None:
        return False
    return actual == digest if full else actual.startswith(digest)


def verify_file(
    path: Path | str,
    *,
    weights_dir: Path | str | None = None,
    registry: Mapping[str, WeightFile] | None = None,
) -> Path:
    """Check a weight file's size and SHA-256 against the registry entry of its name.

    Args:
        path: the file; its name selects the registry entry.
        weights_dir: the user's ``--weights-dir`` (only shapes the fix in the message).
        registry: registry to use (default: :func:`get_registry`).

    Returns:
        ``path`` as a Path.

    Raises:
        WeightsVerificationError: size or hash differ, or the entry has no hash to check
            (one line: the file, expected and actual hash, the fix).
    """
    p = Path(path)
    reg = get_registry(registry)
    entry = reg[p.name]
    metric = _metric_of(p.name)
    actual = sha256_file(p)
    size = p.stat().st_size
    size_ok = entry.size is None or size == entry.size
    if size_ok and _digest_ok(entry, actual):
        return p
    if expected_digest(entry)[0] is None:
        raise WeightsVerificationError(
            metric,
            p,
            "",
            actual,
            f"{p}: no published SHA-256 is known for {p.name}, so it cannot be verified and is "
            "not used",
        )
    size_note = "" if size_ok else f" and {size:,} bytes instead of {entry.size:,}"
    in_hub = p.parent == hub_checkpoint_dir()
    if in_hub:
        fix = (
            f"run `sirem weights fetch --metric {metric} --replace` "
            f"(or delete it and download {entry.url} again)"
        )
    else:
        fix = f"replace it with {entry.url} or remove it"
        if weights_dir is not None:
            fix += " (then the torch hub cache is used)"
    raise WeightsVerificationError(
        metric,
        p,
        expected_digest(entry)[0] or "",
        actual,
        f"{p}: refused, SHA-256 {actual}{size_note}, expected {_describe_expected(entry)} "
        f"({entry.description}); {fix}",
    )


# --------------------------------------------------------------------------------------------
# Lookup, download
# --------------------------------------------------------------------------------------------


def find_weight_files(
    metric: str,
    weights_dir: Path | str | None = None,
    *,
    registry: Mapping[str, WeightFile] | None = None,
) -> dict[str, Path]:
    """Locate the weight files of ``metric`` (``"lpips"`` or ``"fid"``); no check, no download.

    Args:
        metric: metric name.
        weights_dir: folder searched first; None searches only the torch hub checkpoints.
        registry: registry for the message (default: :func:`get_registry`).

    Returns:
        File name -> path of each needed file.

    Raises:
        WeightsUnavailable: a file is in none of the folders (the message names every
            missing file, every folder searched, the URLs and ``sirem weights fetch``).
    """
    names = _files_of(metric)
    dirs = search_dirs(weights_dir)
    found: dict[str, Path] = {}
    for name in names:
        for d in dirs:
            if (d / name).is_file():
                found[name] = d / name
                break
    missing = [n for n in names if n not in found]
    if missing:
        raise WeightsUnavailable(metric, missing, dirs, registry=registry)
    return found


def _unreachable(
    entry: WeightFile, target_dir: Path, reason: str, metric: str
) -> WeightsDownloadError:
    fetch = f"sirem weights fetch --metric {metric}" if metric else "sirem weights fetch"
    return WeightsDownloadError(
        metric,
        [entry.name],
        [target_dir],
        message=(
            f"cannot download {entry.name} from {entry.url} ({reason}); on an online machine "
            f"run `{fetch}`, or download that URL into {target_dir} by hand, or pass "
            "--weights-dir DIR holding the file (sirem evaluate --offline never downloads)"
        ),
    )


@contextlib.contextmanager
def _temporary_in(folder: Path, name: str) -> Iterator[Path]:
    """A temporary file next to its final place, removed on any exit unless renamed away."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def download_weight_file(
    name: str,
    target_dir: Path | str | None = None,
    *,
    timeout: float | None = None,
    progress: DownloadProgress | None = None,
    registry: Mapping[str, WeightFile] | None = None,
) -> Path:
    """Download one registry file from its URL, verify it, and rename it into ``target_dir``.

    The body is streamed to a temporary file in ``target_dir`` while hashing; only a file
    whose size and SHA-256 match is renamed to ``target_dir / name`` (replacing what was
    there); otherwise the temporary is deleted. One attempt; ``timeout`` seconds for the
    connection and each read.

    Args:
        name: a registry file name.
        target_dir: destination folder (default: the torch hub cache); created if needed.
        timeout: seconds (default ``$SIREM_DOWNLOAD_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`).
        progress: ``progress(name, bytes_done, bytes_total)`` after each chunk (total 0 when
            unknown).
        registry: registry to use (default: :func:`get_registry`).

    Returns:
        The verified file.

    Raises:
        WeightsDownloadError: the URL is unreachable, answers an HTTP error, times out, or the
            folder is unwritable.
        WeightsVerificationError: the downloaded bytes have the wrong size or SHA-256, or the
            entry has no hash to check them against (then nothing is downloaded).
    """
    reg = get_registry(registry)
    entry = reg[name]
    metric = _metric_of(name)
    folder = Path(target_dir).expanduser() if target_dir is not None else hub_checkpoint_dir()
    final = folder / name
    digest, _ = expected_digest(entry)
    if digest is None:
        raise WeightsVerificationError(
            metric,
            final,
            "",
            "",
            f"{name}: no published SHA-256 is known, so it is not downloaded from {entry.url}; "
            f"download it yourself, check it, and pass --weights-dir DIR holding it",
        )
    if not entry.url.lower().startswith(("https://", "http://")):
        raise _unreachable(entry, folder, "not an http(s) URL", metric)
    wait = _timeout(timeout)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unreachable(
            entry, folder, f"cannot create {folder}: {exc.strerror}", metric
        ) from None
    request = urllib.request.Request(entry.url, headers={"User-Agent": "sirem (weights fetch)"})
    h = hashlib.sha256()
    done = 0
    try:
        with _temporary_in(folder, name) as tmp:
            response = _open_url(request, entry, folder, wait, metric)
            with response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else (entry.size or 0)
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except TimeoutError:
                        reason = f"stalled for {wait:g} s after {done:,} bytes"
                        raise _unreachable(entry, folder, reason, metric) from None
                    except (OSError, http.client.HTTPException) as exc:
                        reason = f"connection lost after {done:,} bytes: {exc}"
                        raise _unreachable(entry, folder, reason, metric) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(name, done, total)
                out.flush()
                os.fsync(out.fileno())
            actual = h.hexdigest()
            size_ok = entry.size is None or done == entry.size
            if not (size_ok and _digest_ok(entry, actual)):
                size_note = "" if size_ok else f" and {done:,} bytes instead of {entry.size:,}"
                raise WeightsVerificationError(
                    metric,
                    final,
                    digest,
                    actual,
                    f"download of {name} from {entry.url} refused: SHA-256 {actual}{size_note}, "
                    f"expected {_describe_expected(entry)}; it was discarded, nothing was written "
                    f"to {folder}; try again later or download it by hand and check its hash",
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
    except OSError as exc:  # creating/writing the temporary or renaming it (disk full, rights)
        where = exc.filename or folder
        reason = f"cannot write {where}: {exc.strerror or exc}"
        raise _unreachable(entry, folder, reason, metric) from None
    return final


def _open_url(
    request: urllib.request.Request, entry: WeightFile, folder: Path, wait: float, metric: str
) -> http.client.HTTPResponse:
    """One attempt at opening ``request``; every failure becomes one WeightsDownloadError."""
    try:
        return urllib.request.urlopen(request, timeout=wait)
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        inner = exc.reason
        if isinstance(inner, TimeoutError):
            reason = f"no answer within {wait:g} s"
        else:
            reason = getattr(inner, "strerror", None) or str(inner)
    except TimeoutError:
        reason = f"no answer within {wait:g} s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
    raise _unreachable(entry, folder, reason, metric)


def resolve_weight_files(
    metric: str,
    weights_dir: Path | str | None = None,
    *,
    offline: bool | None = None,
    timeout: float | None = None,
    progress: DownloadProgress | None = None,
    registry: Mapping[str, WeightFile] | None = None,
) -> dict[str, Path]:
    """Verified paths of the weight files of ``metric``, downloading missing ones when online.

    Files are looked up in ``weights_dir`` then the torch hub cache. Missing files are
    downloaded into the hub cache unless offline (:func:`is_offline`); every file returned has
    the published size and SHA-256.

    Args:
        metric: ``"lpips"`` or ``"fid"``.
        weights_dir: folder searched first (never written).
        offline: True: never download; None: follow ``SIREM_OFFLINE`` / ``HF_HUB_OFFLINE``.
        timeout: download timeout in seconds (see :func:`download_weight_file`).
        progress: download progress callback.
        registry: registry to use (default: :func:`get_registry`).

    Returns:
        File name -> verified path.

    Raises:
        WeightsUnavailable: offline and a file is missing (the message says how to provide it).
        WeightsVerificationError: a file found or downloaded has the wrong size or SHA-256.
        WeightsDownloadError: a download failed (the message gives the manual alternative).
    """
    reg = get_registry(registry)
    names = _files_of(metric)
    dirs = search_dirs(weights_dir)
    found: dict[str, Path] = {}
    for name in names:
        for d in dirs:
            if (d / name).is_file():
                found[name] = d / name
                break
    missing = [n for n in names if n not in found]
    if missing and is_offline(offline):
        raise WeightsUnavailable(metric, missing, dirs, registry=reg, offline=True)
    for path in found.values():
        verify_file(path, weights_dir=weights_dir, registry=reg)
    for name in missing:
        found[name] = download_weight_file(
            name, hub_checkpoint_dir(), timeout=timeout, progress=progress, registry=reg
        )
    return {name: found[name] for name in names}


@dataclass
class FileStatus:
    """Where one weight file is and whether it checks out.

    Attributes:
        entry: the registry entry.
        metrics: metrics that need it.
        path: where it was found (None: missing).
        verified: True: size and hash match; False: they do not; None: missing.
        full_hash: True when checked against a full SHA-256, False for a name prefix.
        size: bytes on disk (None: missing).
        actual_sha256: the file's SHA-256 (None: missing).
        action: what :func:`fetch_weights` did: "present", "downloaded", "copied" or "".
    """

    entry: WeightFile
    metrics: tuple[str, ...]
    path: Path | None
    verified: bool | None
    full_hash: bool
    size: int | None
    actual_sha256: str | None
    action: str = ""


def _names_for(metrics: Sequence[str]) -> list[str]:
    names: list[str] = []
    for m in metrics:
        names += [n for n in _files_of(m) if n not in names]
    return names


def status(
    metrics: Sequence[str] = ("lpips", "fid"),
    weights_dir: Path | str | None = None,
    *,
    registry: Mapping[str, WeightFile] | None = None,
) -> list[FileStatus]:
    """Where each weight file of ``metrics`` is found and whether it verifies (hashes files)."""
    reg = get_registry(registry)
    dirs = search_dirs(weights_dir)
    rows = []
    for name in _names_for(metrics):
        entry = reg[name]
        path = next((d / name for d in dirs if (d / name).is_file()), None)
        used = tuple(m for m in metrics if name in METRIC_FILES[m])
        full = expected_digest(entry)[1]
        if path is None:
            rows.append(FileStatus(entry, used, None, None, full, None, None))
            continue
        actual = sha256_file(path)
        size = path.stat().st_size
        ok = (entry.size is None or size == entry.size) and _digest_ok(entry, actual)
        rows.append(FileStatus(entry, used, path, ok, full, size, actual))
    return rows


def fetch_weights(
    metrics: Sequence[str] = ("lpips", "fid"),
    target_dir: Path | str | None = None,
    *,
    timeout: float | None = None,
    progress: DownloadProgress | None = None,
    replace: bool = False,
    registry: Mapping[str, WeightFile] | None = None,
) -> list[FileStatus]:
    """Make every weight file of ``metrics`` present and verified in ``target_dir``.

    An explicit request: it downloads whatever the offline settings say. A verified file
    already in ``target_dir`` is kept (no request); when ``target_dir`` is not the hub cache
    and the hub cache holds a verified copy, that copy is copied (through a temporary file);
    anything else is downloaded.

    Args:
        metrics: metrics whose files to fetch.
        target_dir: destination (default: the torch hub cache).
        timeout: download timeout in seconds.
        progress: download progress callback.
        replace: download again over a file in ``target_dir`` that fails verification
            (without it such a file is refused and left alone).
        registry: registry to use (default: :func:`get_registry`).

    Returns:
        The status of each file after fetching (``action`` says what was done).

    Raises:
        WeightsVerificationError: a file in ``target_dir`` is wrong and ``replace`` is False,
            or a download has the wrong hash.
        WeightsDownloadError: a download failed.
    """
    reg = get_registry(registry)
    hub = hub_checkpoint_dir()
    folder = Path(target_dir).expanduser() if target_dir is not None else hub
    rows = []
    for name in _names_for(metrics):
        entry = reg[name]
        path = folder / name
        action = "present"
        if path.is_file():
            try:
                verify_file(path, registry=reg)
            except WeightsVerificationError:
                if not replace:
                    raise
                action = ""
        else:
            action = ""
        if not action and folder != hub and (hub / name).is_file():
            with contextlib.suppress(WeightsVerificationError):
                verify_file(hub / name, registry=reg)
                _copy_verified(hub / name, path, reg)
                action = "copied"
        if not action:
            download_weight_file(name, folder, timeout=timeout, progress=progress, registry=reg)
            action = "downloaded"
        rows.append(
            FileStatus(
                entry,
                tuple(m for m in metrics if name in METRIC_FILES[m]),
                path,
                True,
                expected_digest(entry)[1],
                path.stat().st_size,
                sha256_file(path),
                action,
            )
        )
    return rows


def _copy_verified(source: Path, target: Path, registry: Mapping[str, WeightFile]) -> None:
    """Copy a verified file through a temporary next to ``target``, checked again, renamed."""
    entry = registry[target.name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_in(target.parent, target.name) as tmp:
        shutil.copyfile(source, tmp)
        if not _digest_ok(entry, sha256_file(tmp)):
            raise WeightsVerificationError(
                _metric_of(target.name), target, "", "", f"{source}: changed while copying"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
