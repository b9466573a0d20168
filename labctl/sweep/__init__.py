"""`labctl sweep`: cartesian grids of ordinary labctl runs over seeds and settings.

A grid (a TOML file or inline options) names a command (``train iris``, ``simulate
mnist``, ...) and levels for any of its options; every combination is a *cell*, one
ordinary run of that command as a subprocess with its own session, keyed by a hash of its
full configuration (:mod:`labctl.sweep.cells`). Cells run on local processes or a Dask
cluster (:mod:`labctl.sweep.executors`); each finished cell is written at once, atomically
(:mod:`labctl.sweep.store`), so a sweep killed at any moment loses no finished cell and a
re-run skips them and resumes interrupted ones. ``labctl sweep report`` aggregates the
tidy table over seeds (:mod:`labctl.sweep.report`).

Modules: ``options`` (a command's own argparse options), ``grid`` (grid file and inline
form), ``cells`` (cell keys and argv), ``safety`` (simulated stations only), ``runner``
(one attempt of one cell, in a worker), ``executors`` (local processes, Dask), ``store``
(the sweep directory), ``driver`` (scheduling, retries, resume), ``progress``, ``metrics``
(headline metrics of a cell's JSON summary), ``report`` (statistics and plots).
"""
