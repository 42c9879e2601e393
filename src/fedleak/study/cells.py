"""The independent cells of an experiment grid, run one after another here or as Ray tasks on a cluster (issue 14).

A grid names each cell by the key its result is recorded under in a :class:`~fedleak.report.ResultsDir`, passes
only the cells that folder has not finished (:func:`pending`), and :func:`run_cells` hands each cell's output to
the grid's writer as soon as it arrives, so an interrupted run, local or on Ray, resumes where it stopped. A cell
draws its randomness from its own seed (:func:`fedleak.seeds.run_seed`), never from the order cells run in, and a
Ray task runs with as many torch threads as the local run would, so a Ray run records the same cells as a local one.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from tqdm.auto import tqdm

LOCAL = "local"  # --ray local: start a Ray instance on this machine


def pending(cells: Mapping[str, tuple], finished) -> dict[str, tuple]:
    """The ``key: args`` of ``cells`` whose key is not in ``finished`` (a ResultsDir or the keys it holds)."""
    return {key: args for key, args in cells.items() if key not in finished}


def connect(address: str):
    """The ``ray`` module, connected to the cluster at ``address`` (``"auto"``: the cluster this machine belongs
    to, as ``ray start`` made it; ``"local"``: a new instance on this machine). A Ray already connected in this
    process (e.g. by a test) is used as it is."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("--ray needs Ray, which flwr[simulation] installs: pip install 'flwr[simulation]'") \
            from error
    if not ray.is_initialized():
        try:
            if address == LOCAL:
                ray.init(include_dashboard=False)
            else:
                ray.init(address=address)
        except ConnectionError as error:
            raise ConnectionError(f"no Ray cluster at --ray {address!r} ({error}); start one with `ray start "
                                  "--head` (then --ray auto or its address) or use --ray local") from error
    return ray


def _with_threads(threads: int, cell: Callable, *args):
    """``cell(*args)`` with ``threads`` torch threads (a Ray worker starts with one per CPU of its task)."""
    torch.set_num_threads(threads)
    return cell(*args)


def run_cells(cell: Callable, cells: Mapping[str, tuple], write: Callable[[str, Any], Any], *,
              shared: tuple = (), ray: str | None = None, device: str = "cpu", progress: bool = True,
              desc: str = "cells") -> None:
    """Call ``cell(*shared, *args)`` for each ``key: args`` of ``cells`` and ``write(key, output)`` as each one
    finishes: here, in order, when ``ray`` is None; otherwise as one Ray task per cell on the cluster at ``ray``
    (see :func:`connect`), written in the order they finish. A task reserves as many CPUs as this process's torch
    threads (and runs with that many) plus, when ``device`` is CUDA, one GPU; ``shared`` objects (data sets)
    travel to the cluster once. A failed cell stops the grid (the others are cancelled) after the finished ones
    were written."""
    with tqdm(total=len(cells), desc=desc, disable=not progress) as bar:
        if ray is None:
            for key, args in cells.items():
                write(key, cell(*shared, *args))
                bar.update()
            return
        if not cells:
            return
        cluster = connect(ray)
        threads = torch.get_num_threads()
        largest = max((node["Resources"].get("CPU", 0) for node in cluster.nodes() if node["Alive"]), default=0)
        if threads > largest:
            raise ValueError(f"each cell runs with this process's {threads} torch threads, but the largest node of "
                             f"the Ray cluster at {ray!r} has {largest:g} CPUs; set OMP_NUM_THREADS (or "
                             f"torch.set_num_threads) to at most {largest:g}")
        task = cluster.remote(num_cpus=threads, num_gpus=1 if str(device).startswith("cuda") else 0)(_with_threads)
        objects = [cluster.put(value) for value in shared]
        running = {task.remote(threads, cell, *objects, *args): key for key, args in cells.items()}
        try:
            while running:
                ready, _ = cluster.wait(list(running), num_returns=1)
                key = running.pop(ready[0])
                write(key, cluster.get(ready[0]))
                bar.update()
        finally:
            for ref in running:
                cluster.cancel(ref)


def mean_of_runs(cell: Callable, settings: Mapping[str, tuple], runs: int, results, metrics: tuple[str, ...], *,
                 shared: tuple = (), **options) -> dict[str, dict[str, float]]:
    """``runs`` seeded runs of each ``key: args`` of ``settings``: cell ``{key}/run={run}`` is ``cell(*shared,
    *args, run)``, run by :func:`run_cells` (``options``: ray, device, progress, desc) unless ``results`` holds it;
    then, per setting, the mean of each of ``metrics`` over its runs."""
    grid = {f"{key}/run={run}": (*args, run) for key, args in settings.items() for run in range(runs)}
    run_cells(cell, pending(grid, results), results.add, shared=shared, **options)
    done = results.finished()
    means = {}
    for key in settings:
        cells = [done[f"{key}/run={run}"] for run in range(runs)]
        means[key] = {m: sum(c[m] for c in cells) / len(cells) for m in metrics}
    return means
