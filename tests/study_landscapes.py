"""Landscapes of the study tests' own, loaded by `study.landscape=study_landscapes:NAME`."""

#: not a landscape: a name that `load` must refuse
NOT_CALLABLE = 3


def rows_landscape(table, params):
    """rmsnorm: the baseline takes 100 µs on every workload, a plan 100 / ROWS of its
    regime (so a plan with ROWS=4 everywhere is 4× faster)."""
    if table is None:
        return 100.0
    regime = "long" if params["N"] >= 2048 else "short"
    return 100.0 / table[regime]["ROWS"]
