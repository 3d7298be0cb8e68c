"""The one output policy of every sirem command (README, "Your data is safe").

Every file or folder a command writes goes through :func:`claim_outputs` (once per command, with
the command's inputs) and :func:`atomic_path` (once per write):

1. An output that is one of the command's inputs (the same path, a symlink to it or a hard link
   of it) is refused before any work.
2. An existing output is replaced only with ``overwrite`` (``--overwrite``); a sirem HDF5 file of
   another kind (a prepared file where a reconstruction would go) is never replaced.
3. Free space is checked against the expected size of the output before any work.
4. A lock file ``<output>.lock`` (pid, host, command, start time; created with ``O_EXCL`` and
   held with ``flock``) makes a second writer of the same output fail at once with a line naming
   the first. A lock left by a killed process is taken over, with a note.
5. Outputs are written under a temporary name in the same folder,
   ``.<name>.sirem-<host>-<pid>-<random>.tmp``, flushed to disk (``fsync``) and renamed when
   complete. On any error (a full disk, an I/O error, Ctrl-C) the temporary is removed and the
   error is one line; temporaries left by a killed run are removed by the next run that writes
   the same output, with a note.
6. Files and folders get the permissions the umask gives (``0o666`` / ``0o777`` & ~umask).

HDF5 files are written through :func:`h5_create`, whose file object records a failed write
instead of raising it into the HDF5 library: HDF5 2.0 crashes the process (segmentation fault or
bus error) when a write fails while it flushes its caches, e.g. on a full disk. The error is
raised at the next flush or on close, outside HDF5.

Fault injection (used by ``tests/test_data_safety.py``): ``SIREM_FAULT_PAUSE=<point>`` makes the
process write the file named by ``SIREM_FAULT_READY`` and sleep at that point (so a test can
``kill -9`` it there); ``SIREM_FAULT_ENOSPC_AFTER=<bytes>`` makes guarded writes fail with
ENOSPC once that many bytes were written by the process; ``SIREM_NO_SPACE_CHECK=1`` skips the
free-space check (to reach a real full disk).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sirem_cli.errors import OutputError, SiremError

log = logging.getLogger("sirem")

#: errno values of a full disk (or quota) and of a failing device.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
IO_ERRNOS = frozenset({errno.EIO, errno.EROFS})
#: Free bytes kept on top of the expected size of an output.
SPACE_MARGIN_BYTES = 16 * 2**20
#: A lock file still empty after this long was left by a process killed while creating it.
EMPTY_LOCK_GRACE_S = 10.0
#: How long a lock file may stay empty (its owner writing it) before we report it as busy.
LOCK_SETTLE_S = 2.0

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
#: Sirem outputs this process holds: realpath -> the claim (nested writes skip the checks).
_CLAIMED: dict[str, _Claim] = {}


# -- small helpers ---------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    """``1.2 GB``, ``35 MB``, ``800 kB``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (or of its nearest existing folder)."""
    probe = existing_folder(path)
    probe = Path(os.path.realpath(probe))
    while not os.path.ismount(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def existing_folder(path: Path) -> Path:
    """``path`` itself when it is a folder, else its nearest existing parent folder."""
    probe = Path(os.path.abspath(path))
    while not probe.is_dir() and probe != probe.parent:
        probe = probe.parent
    return probe


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the file system of ``path``."""
    return int(shutil.disk_usage(existing_folder(path)).free)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file: the same resolved path, a symlink or a hard link."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _command_line() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name in ("__main__.py", "-c", "-m"):  # python -m sirem_cli
        name = "sirem"
    argv = [name, *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# -- fault injection (tests) -------------------------------------------------------------------


def fault_point(name: str) -> None:
    """Pause here when ``SIREM_FAULT_PAUSE`` names this point (tests kill the process here)."""
    if os.environ.get("SIREM_FAULT_PAUSE") != name:
        return
    ready = os.environ.get("SIREM_FAULT_READY")
    if ready:
        Path(ready).write_text(f"{os.getpid()} {name}\n")
    time.sleep(float(os.environ.get("SIREM_FAULT_SLEEP_S", "120")))


_written_by_process = 0


def _injected_enospc(n_bytes: int) -> OSError | None:
    """The simulated ENOSPC of ``SIREM_FAULT_ENOSPC_AFTER`` (None when not due)."""
    global _written_by_process
    limit = os.environ.get("SIREM_FAULT_ENOSPC_AFTER")
    _written_by_process += n_bytes
    if limit is not None and _written_by_process > int(limit):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


# -- guarded files -----------------------------------------------------------------------------


class GuardedFile(io.RawIOBase):
    """A seekable read-write file that records its first write error.

    ``swallow=True`` (for HDF5): a failed write is recorded and reported as done, so the HDF5
    library never sees an error it cannot recover from; :meth:`check` (called on every flush and
    on close) raises it. ``swallow=False``: the error is raised from :meth:`write` at once.

    Args:
        path: the file to create (truncated), with the umask's permissions.
        swallow: see above.
    """

    def __init__(self, path: Path | str, *, swallow: bool) -> None:
        super().__init__()
        self.path = Path(path)
        self.swallow = swallow
        self.error: OSError | None = None
        self._pos = 0
        self._size = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _record(self, exc: OSError) -> None:
        if self.error is None:
            self.error = OSError(exc.errno, exc.strerror or str(exc), str(self.path))
        if not self.swallow:
            raise self.error

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None:
            try:
                injected = _injected_enospc(n)
                if injected is not None:
                    raise injected
                done = 0
                while done < n:
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self._record(exc)
        self._pos += n
        self._size = max(self._size, self._pos)
        return n

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = os.pread(self._fd, len(view), self._pos)
        view[: len(data)] = data
        if len(data) < len(view):  # beyond the end (or a write that was swallowed): zeros
            view[len(data) :] = bytes(len(view) - len(data))
        self._pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else int(size)
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self._record(exc)
        self._size = size
        return size

    def flush(self) -> None:
        pass

    def check(self) -> None:
        """Raise the recorded write error, if any."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """fsync and close; then raise a recorded write error."""
        if not self.closed:
            try:
                if self.error is None:
                    try:
                        os.fsync(self._fd)
                    except OSError as exc:
                        self._record(exc)
            finally:
                os.close(self._fd)
                super().close()
        if self.error is not None:
            raise self.error


def h5_create(path: Path | str) -> Any:
    """A new HDF5 file for writing (an ``h5py.File``) whose write errors never reach HDF5.

    A failed write (full disk, I/O error) is raised as an ``OSError`` with its errno on the next
    ``flush()`` or on ``close()`` rather than inside the HDF5 library, which crashes the process
    on it (see the module docstring).
    """
    import h5py

    class _GuardedH5File(h5py.File):
        def __init__(self, guard: GuardedFile) -> None:
            super().__init__(guard, "w")
            self._sirem_guard = guard

        def check(self) -> None:
            self._sirem_guard.check()

        def flush(self) -> None:
            super().flush()
            self._sirem_guard.check()
            fault_point("h5:flush")

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._sirem_guard.close()

    guard = GuardedFile(path, swallow=True)
    try:
        return _GuardedH5File(guard)
    except BaseException:
        guard.error = guard.error or OSError(errno.EIO, "cannot create the HDF5 file", str(path))
        with contextlib.suppress(OSError):
            guard.close()
        raise


def h5_check(f: Any) -> None:
    """Raise a write error recorded by a file from :func:`h5_create` (no-op for other files)."""
    check = getattr(f, "check", None)
    if callable(check):
        check()


@contextlib.contextmanager
def open_binary(path: Path | str) -> Iterator[GuardedFile]:
    """A binary file for writing whose errors are ``OSError`` with their errno (for torch.save)."""
    handle = GuardedFile(path, swallow=False)
    try:
        yield handle
    finally:
        handle.close()


# -- write errors ------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack += [item.__cause__, item.__context__]


def _errno_of(exc: BaseException) -> int | None:
    for item in _chain(exc):
        number = getattr(item, "errno", None)
        if isinstance(number, int) and number in DISK_FULL_ERRNOS | IO_ERRNOS:
            return number
        text = str(item)
        if "No space left on device" in text or "errno = 28" in text:
            return errno.ENOSPC
        if "Disk quota exceeded" in text:
            return errno.EDQUOT
        if "Input/output error" in text or "errno = 5," in text:
            return errno.EIO
    return None


def write_error(exc: BaseException, path: Path, *, existed: bool = False) -> OutputError | None:
    """One-line :class:`OutputError` for a write that failed on a full disk or an I/O error.

    Returns None when ``exc`` is something else (then it passes unchanged). Failures without an
    errno (torch, ffmpeg) count as a full disk when the file system has under 1 MB left.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return None
    number = _errno_of(exc)
    free = None
    with contextlib.suppress(OSError):
        free = free_bytes(path.parent)
    if number is None and free is not None and free < 2**20 and not isinstance(exc, SiremError):
        number = errno.ENOSPC
    if number is None:
        return None
    where = mount_point(path.parent)
    kept = "the existing file is unchanged" if existed else "nothing was written"
    if number in DISK_FULL_ERRNOS:
        what = "disk full" if number != errno.EDQUOT else "disk quota exceeded"
        room = f", {human_bytes(free)} free on {where}" if free is not None else ""
        return OutputError(f"{path}: {what} while writing{room}; {kept}")
    if number == errno.EROFS:
        return OutputError(f"{path}: {where} is a read-only file system; {kept}")
    return OutputError(f"{path}: I/O error while writing (on {where}); {kept}")


def check_free_space(path: Path, expected_bytes: float) -> None:
    """Raise OutputError unless the file system of ``path`` has room for ``expected_bytes``."""
    if expected_bytes <= 0 or os.environ.get("SIREM_NO_SPACE_CHECK") == "1":
        return
    free = free_bytes(path.parent)
    if free < expected_bytes + SPACE_MARGIN_BYTES:
        raise OutputError(
            f"{path}: needs about {human_bytes(expected_bytes)}, "
            f"{human_bytes(free)} free on {mount_point(path.parent)}"
        )


# -- the lock ----------------------------------------------------------------------------------


def lock_path_for(path: Path) -> Path:
    """``<output>.lock``."""
    return path.with_name(path.name + ".lock")


def _read_lock(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
    except OSError:
        return None
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid')} on {info.get('host')}: `{info.get('command')}`, "
        f"started {info.get('started')}"
    )


class _Lock:
    """``<output>.lock``: created with O_EXCL, flock-ed while its owner lives."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = lock_path_for(output)
        self.fd: int | None = None
        self._deadline = 0.0

    def acquire(self) -> None:
        import fcntl

        self._deadline = time.monotonic() + LOCK_SETTLE_S
        for _ in range(1000):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
            except FileExistsError:
                self._inspect_existing()
                continue
            except OSError as exc:
                raise OutputError(
                    f"{self.output}: cannot create the lock file {self.path.name} "
                    f"({exc.strerror or exc})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # only a momentary inspector can hold it
                info = {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": _command_line(),
                    "started": _now(),
                }
                os.write(fd, json.dumps(info).encode())
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                err = write_error(exc, self.path)
                raise err or OutputError(
                    f"{self.output}: cannot write the lock file {self.path.name} ({exc})"
                ) from None
            self.fd = fd
            return
        raise OutputError(f"{self.output}: cannot take the lock {self.path} (it keeps changing)")

    def _inspect_existing(self) -> None:
        """Raise when a live process holds the lock; remove a stale lock (then the caller
        retries)."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"{self.output}: cannot read the lock {self.path} ({exc})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_lock(fd)
                if info is None and time.monotonic() < self._deadline:
                    time.sleep(0.02)  # its owner is writing it this instant
                    return
                raise OutputError(self._busy(info)) from None
            # We hold the flock: its owner is gone, or has not flock-ed it yet (just created).
            st = os.fstat(fd)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                return
            if (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                return  # replaced meanwhile: start over
            info = _read_lock(fd)
            if info is None:
                if time.time() - st.st_mtime < EMPTY_LOCK_GRACE_S:
                    if time.monotonic() >= self._deadline:
                        raise OutputError(self._busy(None, unsure=True))
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    time.sleep(0.02)
                    return
            else:
                pid, host = int(info.get("pid", -1)), str(info.get("host", ""))
                if host != socket.gethostname():
                    # Another machine: its flock may not reach us, and its pid means nothing here.
                    raise OutputError(self._busy(info, remote=True))
                if pid != os.getpid() and pid_alive(pid):
                    raise OutputError(self._busy(info, unsure=True))
            os.unlink(self.path)
            log.warning(
                "%s: took over the lock of %s, which is no longer running",
                self.output,
                _describe(info),
            )
        finally:
            os.close(fd)

    def _busy(
        self, info: dict[str, Any] | None, *, remote: bool = False, unsure: bool = False
    ) -> str:
        if info is None:
            text = f"{self.output}: locked by another process (through {self.path.name})"
        else:
            text = f"{self.output}: another sirem is writing it ({_describe(info)})"
        if remote or unsure:
            return text + f"; if it is no longer running, remove {self.path} and try again"
        return text + "; wait for it to finish or write to another file"

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            st = os.fstat(self.fd)
            current = os.stat(self.path)
            if (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None


# -- stale temporaries -------------------------------------------------------------------------


def temporary_name(name: str) -> str:
    """``.<name>.sirem-<host>-<pid>-<random>.tmp``: the temporary of output ``name``."""
    return f".{name}.sirem-{_HOST}-{os.getpid()}-{secrets.token_hex(3)}.tmp"


def _temporary_pattern(name: str) -> re.Pattern[str]:
    # ours (host, pid), or the mkdtemp names of earlier sirem versions (8 random characters)
    return re.compile(
        r"^\." + re.escape(name) + r"\.(sirem-[A-Za-z0-9_]+-\d+-[0-9a-f]+|[a-z0-9_]{8})\.tmp$"
    )


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of ``path`` left in its folder (call while holding its lock: all are stale)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return []
    pattern = _temporary_pattern(path.name)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(f".{path.name}.") and pattern.match(entry.name):
                found.append(folder / entry.name)
    return sorted(found)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*"))


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries a killed run left for ``path`` and say so (one note)."""
    stale = stale_temporaries(path)
    if not stale:
        return []
    total = 0
    for item in stale:
        with contextlib.suppress(OSError):
            total += _size(item)
        _remove(item)
    names = ", ".join(p.name for p in stale[:3]) + (" ..." if len(stale) > 3 else "")
    log.warning(
        "%s: removed %d temporar%s left by an interrupted run (%s, %s)",
        path,
        len(stale),
        "y" if len(stale) == 1 else "ies",
        names,
        human_bytes(total),
    )
    return stale


# -- the policy --------------------------------------------------------------------------------


def _sirem_format(path: Path) -> str | None:
    """The ``format`` attribute of a sirem HDF5 file at ``path``, else None."""
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != b"\x89HDF\r\n\x1a\n":
                return None
    except OSError:
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except Exception:  # unreadable HDF5: not ours to judge
        return None
    if isinstance(fmt, bytes):
        fmt = fmt.decode(errors="replace")
    return fmt if isinstance(fmt, str) and fmt.startswith("sirem") else None


_KIND_NAMES = {
    "sirem-prepared": "a prepared file",
    "sirem-recon": "a reconstruction file",
}


def check_output(
    path: Path,
    *,
    inputs: Iterable[Path | str] = (),
    overwrite: bool = False,
    is_dir: bool = False,
    kind: str | None = None,
) -> Path:
    """The checks of an output done before any work (rules 1 and 2 of the module docstring).

    Raises:
        OutputError: one line naming ``path`` and why it cannot be written.
    """
    path = Path(path)
    for item in inputs:
        if item is not None and same_file(path, item):
            shown = f" ({item})" if str(item) != str(path) else ""
            raise OutputError(
                f"{path}: is also an input{shown}; sirem never writes over its inputs "
                "(give another output name)"
            )
    exists = path.exists() or path.is_symlink()
    if exists:
        if is_dir != path.is_dir():
            raise OutputError(f"{path}: is {'a folder' if path.is_dir() else 'a file'}")
        existing = None if is_dir else _sirem_format(path)
        if existing is not None and existing != kind:
            what = _KIND_NAMES.get(existing, f"a {existing} file")
            raise OutputError(
                f"{path}: is {what}, which this command does not write; refusing to replace it "
                "(is the output name missing?)"
            )
        if not overwrite:
            raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
    probe = Path(os.path.abspath(path.parent if str(path.parent) else "."))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write here ({probe} is not a writable folder)")
    return path


class _Claim:
    def __init__(self, path: Path, is_dir: bool) -> None:
        self.path = path
        self.is_dir = is_dir
        self.lock = _Lock(path)


def is_claimed(path: Path | str) -> bool:
    """Whether this process holds ``path`` through :func:`claim_outputs`."""
    return os.path.realpath(path) in _CLAIMED


@contextlib.contextmanager
def claim_outputs(
    paths: Sequence[Path | str],
    *,
    inputs: Iterable[Path | str] = (),
    overwrite: bool = False,
    is_dir: bool = False,
    expected_bytes: float = 0,
    kind: str | None = None,
) -> Iterator[list[Path]]:
    """Hold a command's outputs for the whole command (the policy of the module docstring).

    Checks every output (not an input, ``overwrite`` for an existing one, writable folder), the
    free space for ``expected_bytes`` (all outputs together), creates the output folders, takes
    each output's lock and removes the temporaries a killed run left. Writes with
    :func:`atomic_path` inside the block skip the checks for these paths.

    Args:
        paths: the output files (or folders with ``is_dir``).
        inputs: every file or folder the command reads.
        overwrite: replace existing outputs.
        is_dir: the outputs are folders.
        expected_bytes: about how many bytes the outputs take (0: no check).
        kind: the sirem HDF5 ``format`` written (an existing sirem file of another format is
            never replaced).

    Yields:
        The outputs as paths.

    Raises:
        OutputError: one line naming the output and the reason.
    """
    inputs = [p for p in inputs if p is not None]
    outs = [Path(p) for p in paths]
    fresh = [p for p in outs if not is_claimed(p)]
    for path in fresh:
        check_output(path, inputs=inputs, overwrite=overwrite, is_dir=is_dir, kind=kind)
    if fresh:
        check_free_space(fresh[0], expected_bytes)
    claims: list[_Claim] = []
    try:
        for path in fresh:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(
                    f"{path}: cannot create its folder ({exc.strerror or exc})"
                ) from None
            claim = _Claim(path, is_dir)
            claim.lock.acquire()
            claims.append(claim)
            _CLAIMED[os.path.realpath(path)] = claim
            remove_stale_temporaries(path)
        yield outs
    finally:
        for claim in reversed(claims):
            _CLAIMED.pop(os.path.realpath(claim.path), None)
            claim.lock.release()


def check_output_path(path: Path, *, overwrite: bool = True, is_dir: bool = False) -> Path:
    """Check that ``path`` can be written (see :func:`check_output`); the early check of a
    library function that writes ``path`` later."""
    if is_claimed(path):
        return Path(path)
    return check_output(Path(path), overwrite=overwrite, is_dir=is_dir)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync_path(Path(root) / name)
            with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
                _fsync_path(Path(root))
    else:
        _fsync_path(path)


def _fsync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync_path(path)


@contextlib.contextmanager
def atomic_path(
    path: Path,
    *,
    overwrite: bool = True,
    is_dir: bool = False,
    inputs: Iterable[Path | str] = (),
    expected_bytes: float = 0,
    kind: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only when complete.

    Inside :func:`claim_outputs` of ``path`` the checks were done there; otherwise ``path`` is
    claimed for the duration of this write (with ``overwrite``, ``inputs``, ``expected_bytes``).
    The temporary is flushed to disk before the rename, and removed on any error; a full disk or
    an I/O error becomes one :class:`OutputError` line.
    """
    path = Path(path)
    if not is_claimed(path):
        with (
            claim_outputs(
                [path],
                inputs=inputs,
                overwrite=overwrite,
                is_dir=is_dir,
                expected_bytes=expected_bytes,
                kind=kind,
            ),
            _write(path, is_dir) as tmp,
        ):
            yield tmp
        return
    with _write(path, is_dir) as tmp:
        yield tmp


@contextlib.contextmanager
def _write(path: Path, is_dir: bool) -> Iterator[Path]:
    folder = path.parent if str(path.parent) else Path(".")
    existed = path.exists()
    tmp = folder / temporary_name(path.name)
    try:
        os.mkdir(tmp, 0o777)  # the umask applies (mkdtemp would make it 0700)
    except OSError as exc:
        raise write_error(exc, path, existed=existed) or OutputError(
            f"{path}: cannot write here ({exc.strerror or exc})"
        ) from None
    target = tmp if is_dir else tmp / path.name
    try:
        fault_point("atomic:start")
        yield target
        if not (target.is_dir() if is_dir else target.exists()):
            raise OutputError(f"{path}: nothing was written")
        _fsync_tree(target)
        fault_point("atomic:rename")
        if is_dir:
            _replace_folder(target, path)
        else:
            os.replace(target, path)
        _fsync_folder(folder)
    except BaseException as exc:
        err = write_error(exc, path, existed=existed)
        if err is not None:
            raise err from None
        raise
    finally:
        _remove(tmp)


def _replace_folder(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``; an existing ``path`` is moved aside first, then removed."""
    if not path.exists():
        os.rename(new, path)
        return
    aside = path.parent / temporary_name(path.name)
    os.rename(path, aside)  # killed from here on: both are temporaries the next run removes
    fault_point("atomic:swap")
    os.rename(new, path)
    _remove(aside)


# -- folders a command owns (sirem synth) -------------------------------------------------------


def _listing(folder: Path) -> list[str]:
    return sorted(
        str(Path(root, name).relative_to(folder))
        for root, _d, files in os.walk(folder)
        for name in files
    )


def write_folder_marker(folder: Path, marker: str, info: dict[str, Any]) -> None:
    """Leave ``marker`` in a folder a command wrote: ``info`` plus the list of its files, so a
    later ``--overwrite`` can tell the folder holds nothing else."""
    files = _listing(folder)
    (folder / marker).write_text(json.dumps({**info, "files": files}, indent=1) + "\n")


def check_folder_output(
    out: Path,
    *,
    marker: str,
    command: str,
    overwrite: bool,
    legacy: re.Pattern[str] | None = None,
) -> bool:
    """The checks of an output folder a command writes whole (``sirem synth OUT``).

    Never the current folder, one of its parents, the home folder or ``/``; an existing folder
    is replaced only with ``overwrite``, only when it holds ``marker`` (the command wrote it) and
    no file besides the ones the marker lists. An empty folder is simply replaced. A folder
    without the marker (written before markers existed) is replaced when its README.txt names
    ``command`` and every file matches ``legacy``.

    Returns:
        Whether an existing folder will be replaced (pass it as ``overwrite`` to the claim).

    Raises:
        OutputError: one line saying why the folder is not replaced.
    """
    out = Path(out)
    resolved = Path(os.path.realpath(out))
    cwd = Path(os.path.realpath(Path.cwd()))
    what = f"{command} writes a new folder: give a name such as corpus/"
    if resolved == cwd:
        raise OutputError(f"{out}: is the current folder; {what}")
    if resolved in cwd.parents:
        raise OutputError(f"{out}: is a parent of the current folder; {what}")
    if resolved == Path(os.path.realpath(Path.home())):
        raise OutputError(f"{out}: is your home folder; {what}")
    if resolved == Path(resolved.anchor):
        raise OutputError(f"{out}: is the root folder; {what}")
    if not out.exists():
        return False
    if not out.is_dir():
        raise OutputError(f"{out}: is a file")
    try:
        entries = list(os.scandir(out))
    except OSError as exc:
        raise OutputError(f"{out}: cannot read it ({exc.strerror or exc})") from None
    if not entries:
        return True
    if not overwrite:
        raise OutputError(
            f"{out}: already exists (pass --overwrite to replace a folder {command} wrote)"
        )
    files = _listing(out)
    try:
        listed = json.loads((out / marker).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        listed = None
    if listed is None:
        try:
            readme = (out / "README.txt").read_text(errors="replace")
        except OSError:
            readme = ""
        if legacy is None or f"`{command}`" not in readme:
            raise OutputError(
                f"{out}: was not written by {command} (no {marker} in it); refusing to replace it"
            ) from None
        listed = [f for f in files if f == "README.txt" or legacy.fullmatch(f)]
    extra = sorted(set(files) - set(listed) - {marker})
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise OutputError(
            f"{out}: holds files {command} did not write ({extra[0]}{more}); refusing to replace it"
        )
    return True
