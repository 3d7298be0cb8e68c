"""The non-learned reconstruction methods (``sirem baseline --method``), one entry each.

Import-light on purpose (standard library only): the CLI builds ``--method``'s choices and
help from :data:`BASELINES`, and reports take their row labels and order from it.

Adding a method is two steps: write its solver in :mod:`sirem_cli.recon.solvers` with the
common signature ``solver(normal, b, *, lam, lam_spatial, lipschitz, iters, data_const,
track_objective, progress) -> SolverResult`` (``lam``/``lam_spatial`` in objective units),
then add one :class:`BaselineSpec` below naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sirem_cli.errors import InputError


@dataclass(frozen=True)
class BaselineSpec:
    """One reconstruction method.

    Attributes:
        name: identifier on the command line and in files (``"tv"``).
        label: display name in tables and figures.
        description: one line for ``--help``.
        default_lam: default relative regularization weight (0: the method has none).
        solver: ``"function"`` in :mod:`sirem_cli.recon.solvers`, or None for the one-pass
            gridding ``|A^H W y|``.
        couples_frames: the regularizer links frames (solved over all frames at once).
        spatial_weight: accepts ``--lam-spatial`` (a second, spatial weight).
    """

    name: str
    label: str
    description: str
    default_lam: float
    solver: str | None
    couples_frames: bool = False
    spatial_weight: bool = False


#: Relative lambdas tuned on the synthetic benchmark utterance (docs/benchmarks.md,
#: "Baselines vs BART"); choose per data set on validation data (``--lam auto``).
BASELINES: dict[str, BaselineSpec] = {
    spec.name: spec
    for spec in (
        BaselineSpec("gridding", "Gridding", "|A^H W y|, one adjoint pass", 0.0, None),
        BaselineSpec(
            "wavelet", "Wavelet", "l1 db4 wavelets per frame, FISTA", 0.03, "wavelet_solver"
        ),
        BaselineSpec("tv", "TV", "isotropic TV per frame, primal-dual", 0.03, "tv_solver"),
        BaselineSpec(
            "ttv",
            "Temporal TV",
            "l1 of the frame-to-frame difference (+ --lam-spatial TV), primal-dual",
            0.1,
            "ttv_solver",
            couples_frames=True,
            spatial_weight=True,
        ),
    )
}

#: Method names in table order.
BASELINE_METHODS: tuple[str, ...] = tuple(BASELINES)


def baseline_spec(name: str) -> BaselineSpec:
    """The spec of a method; InputError naming the choices when unknown."""
    spec = BASELINES.get(name)
    if spec is None:
        raise InputError(f"method {name!r}: expected one of {', '.join(BASELINES)}")
    return spec
