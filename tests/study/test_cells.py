"""Grid cells run here or as Ray tasks (issue 14): a small trap-weights pruning grid on a local Ray instance writes
the cells the local run writes, a rerun computes only the cells a killed run lost, and every grid command takes
``--ray``."""
import json
import time

import pytest

from fedleak.cli import build_parser
from fedleak.study import cells as grid_cells
from fedleak.study.cells import pending, run_cells
from fedleak.experiments.trap_pruning import TrapPruningConfig, reproduce_trap_pruning

CONFIG = TrapPruningConfig(dataset="bundled", model_options={"widths": (300, 8)}, batch_size=30, rates=(0.99, 0.5),
                           runs=2)


def _cells(folder) -> dict[str, dict]:
    return {cell["key"]: cell for cell in map(json.loads, (folder / "cells.jsonl").read_text().splitlines())}


def test_local_cells_run_in_order_with_the_shared_objects_and_skip_finished_ones():
    written = []
    todo = pending({"a": (1,), "b": (2,), "c": (3,)}, {"b"})
    run_cells(lambda offset, x: offset + x, todo, lambda key, value: written.append((key, value)), shared=(10,),
              progress=False)
    assert written == [("a", 11), ("c", 13)]


@pytest.mark.parametrize("argv", [["ablation", "--dataset", "bundled", "--model", "cnn"], ["detect-eval"],
                                  ["reproduce", "trap-weights"], ["reproduce", "dp"], ["reproduce", "pruning"],
                                  ["reproduce", "fedavg"], ["reproduce", "passive-training"],
                                  ["reproduce", "defenses-dp"], ["reproduce", "ablation", "--dataset", "bundled",
                                                                 "--model", "cnn"], ["reproduce", "detection"]])
def test_every_grid_command_takes_ray(argv):
    assert build_parser().parse_args([*argv, "--ray", "auto"]).ray == "auto"
    assert build_parser().parse_args(argv).ray is None


@pytest.fixture
def ray_instance():
    """One local Ray instance of one CPU (the suite's workers have one thread each), for one test: under
    ``pytest -n 2`` two tests would start two."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (flwr[simulation] brings it)")
    start = time.perf_counter()
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # a sandbox without shared memory or sockets
        pytest.skip(f"a local Ray instance could not start: {error}")
    print(f"Ray started in {time.perf_counter() - start:.1f} s")
    yield ray
    ray.shutdown()


def test_a_grid_on_ray_writes_the_local_cells_resumes_the_lost_ones_and_stops_at_a_failure(tmp_path, ray_instance,
                                                                                          monkeypatch):
    local = reproduce_trap_pruning(CONFIG, tmp_path / "local", progress=False)
    on_ray = reproduce_trap_pruning(CONFIG, tmp_path / "ray", progress=False, ray="auto")
    assert len(_cells(tmp_path / "local")) == 6 and _cells(tmp_path / "ray") == _cells(tmp_path / "local")
    assert on_ray["rows"] == local["rows"] and on_ray["rows"][0]["R"] >= 0.2  # trap weights do leak, unpruned

    lines = (tmp_path / "ray" / "cells.jsonl").read_text().splitlines()
    (tmp_path / "ray" / "cells.jsonl").write_text("\n".join(lines[:4]) + "\n")  # a run killed after 4 cells
    sent = []

    def spy(cell, cells, write, **options):
        sent.append(sorted(cells))
        run_cells(cell, cells, write, **options)

    monkeypatch.setattr(grid_cells, "run_cells", spy)
    reproduce_trap_pruning(CONFIG, tmp_path / "ray", progress=False, ray="auto")
    assert sent == [sorted(json.loads(line)["key"] for line in lines[4:])]  # only the lost cells ran again
    assert _cells(tmp_path / "ray") == _cells(tmp_path / "local")
    reproduce_trap_pruning(CONFIG, tmp_path / "ray", progress=False, ray="auto")
    assert sent[-1] == []

    def cell(x):
        if x == 2:
            time.sleep(1)
            raise ValueError("cell 2 is broken")
        return x

    monkeypatch.setattr(grid_cells.torch, "get_num_threads", lambda: 2)  # a cell would need 2 CPUs, nodes have 1
    with pytest.raises(ValueError, match="2 torch threads, but the largest node .* has 1 CPUs"):
        run_cells(cell, {"a": (1,)}, print, ray="auto", progress=False)
    monkeypatch.undo()
    written = {}
    with pytest.raises(ValueError, match="cell 2 is broken"):  # the finished cell is written, the error raised
        run_cells(cell, {"a": (1,), "b": (2,)}, written.__setitem__, ray="auto", progress=False)
    assert written == {"a": 1}
