"""Shared fixtures. Environment first: nothing may reach a network or spin OpenMP threads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import pytest

#: The shared test corpus: 3 speakers (so every split has one), 1 utterance each, 3 s scans.
CORPUS_ARGS = {"subjects": 3, "utterances": 1, "seconds": 3.0, "seed": 0}


def _shared(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """Build an artefact once per test session, also across pytest-xdist workers."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    target = root / name
    with FileLock(str(target) + ".build-lock"):
        if not (target.exists() and (target.parent / f"{name}.done").exists()):
            build(target)
            (target.parent / f"{name}.done").write_text("ok")
    return target


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's embedding cache of the tests: a folder of this test session, never ~/.cache."""
    path = tmp_path_factory.getbasetemp() / "embedding-cache"
    os.environ["SIREM_CACHE"] = str(path)
    return path


@pytest.fixture
def need_cuda() -> None:
    """Skip unless cufinufft and torch can run on a CUDA device here (tests marked ``cuda``)."""
    from sirem_cli.nufft import backend

    ok, reason = backend.cuda_status()
    if not ok:
        pytest.skip(f"no usable CUDA NUFFT: {reason}")


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus written by ``sirem synth`` (read-only for tests)."""
    from sirem_cli.api.synth import run_synth
    from sirem_cli.synth.corpus import SynthConfig

    def build(path: Path) -> None:
        run_synth(path, SynthConfig(**CORPUS_ARGS), overwrite=True)

    return _shared(tmp_path_factory, "corpus", build)


@pytest.fixture(scope="session")
def prepared_file(tmp_path_factory: pytest.TempPathFactory, synth_corpus: Path) -> Path:
    """The shared corpus prepared with default options (read-only for tests)."""
    from sirem_cli.api.prepare import run_prepare
    from sirem_cli.data.prepare import PrepareConfig

    def build(path: Path) -> None:
        run_prepare(synth_corpus, path, PrepareConfig(), overwrite=True)

    return _shared(tmp_path_factory, "prepared.h5", build)


@pytest.fixture(scope="session")
def shared_anatomy_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 speakers (the paper's 10/2/4 split) x 3 s sharing one anatomy, prepared (read-only)."""
    from sirem_cli.api.prepare import run_prepare
    from sirem_cli.api.synth import run_synth
    from sirem_cli.data.prepare import PrepareConfig
    from sirem_cli.synth.corpus import SynthConfig

    def build(path: Path) -> None:
        corpus = path.with_name("shared-anatomy-corpus")
        config = SynthConfig(subjects=16, utterances=1, seconds=3.0, anatomy_spread=0.0)
        run_synth(corpus, config, overwrite=True)
        run_prepare(corpus, path, PrepareConfig(), overwrite=True)

    return _shared(tmp_path_factory, "shared-anatomy.h5", build)


@pytest.fixture(scope="session")
def prepared_n2(tmp_path_factory: pytest.TempPathFactory, synth_corpus: Path) -> Path:
    """The shared corpus prepared at 2 arms per frame (83 frames/s; read-only for tests)."""
    from sirem_cli.api.prepare import run_prepare
    from sirem_cli.data.prepare import PrepareConfig

    def build(path: Path) -> None:
        run_prepare(synth_corpus, path, PrepareConfig(arms_per_frame=2), overwrite=True)

    return _shared(tmp_path_factory, "prepared-n2.h5", build)
