"""bnlib.lab.sweep: runs x seeds through any executor with the same numbers; a cache that is never stale or damaged."""

import asyncio
import concurrent.futures as cf
import contextlib
import gzip
import io
import json
import multiprocessing
import os
import shutil
import time

import pandas as pd
import pytest

from bnlib.data import dataset_stats
from bnlib.lab import experiment, sweep
from bnlib.lab.experiment import CACHE_VERSION, GROUPING_TOLERANCE, Run, train_run
from bnlib.lab.sweep import RunCache, SweepError, call_sweep, run_sweep, trained_model
from bnlib.train import evaluate

RUN = Run(dataset="mnist", model="mlp", hidden=(32, 32), norm="bn", steps=12, batch_size=32, lr=0.1, eval_every=6,
          test_size=300, train_size=3000)
RUNS = [RUN, RUN.replace(lr=0.3), RUN.replace(norm="none")]
CNN = Run(dataset="mnist", model="small_cnn", width=0.25, norm="bn", steps=8, batch_size=32, lr=0.05, eval_every=4,
          test_size=200, train_size=2000, augment=True, validate=True)
FAILS = RUN.replace(reg_cf=0.5)  # fit refuses reg_cf > 0 for a network whose layers store no penalty: raises in the worker


def numbers(df: pd.DataFrame) -> pd.DataFrame:
    """A sweep's table without the wall-clock column (the one column that differs between executions)."""
    return df.drop(columns=["elapsed_s"]).reset_index(drop=True)


def trained(folder) -> set[str]:
    return {p.name.split(".")[0] for p in folder.glob("*.json")}


@pytest.mark.slow
@pytest.mark.exact
def test_a_sweep_in_the_kernel_a_local_pool_and_dask_gives_identical_tables(tmp_path, data_root):
    """Bit for bit on one machine, for MLPs and for a small CNN with augmentation and a validation split."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    runs = [*RUNS, CNN]
    kernel = pd.concat([train_run(run, seed).assign(**sweep._columns(run), seed=seed) for run in runs for seed in (0, 1)],
                       ignore_index=True)
    pool = run_sweep(runs, [0, 1], tmp_path / "pool", workers=2, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        on_dask = run_sweep(runs, [0, 1], tmp_path / "dask", executor=client.get_executor(), progress=False)
    pd.testing.assert_frame_equal(numbers(pool), numbers(kernel), check_exact=True, check_dtype=False)
    pd.testing.assert_frame_equal(numbers(on_dask), numbers(pool), check_exact=True)
    assert list(pool["seed"].unique()) == [0, 1] and pool.groupby(["model", "lr", "norm", "seed"]).size().eq(3).all()
    assert pool.loc[pool["model"] == "small_cnn", "val_acc"].notna().sum() == 2  # the last row of each CNN seed


@pytest.mark.slow
def test_results_come_back_in_the_order_asked_with_the_run_fields_as_columns(tmp_path, data_root):
    df = run_sweep(RUNS[::-1], [1, 0], tmp_path, workers=2, progress=False)
    order = df[["norm", "lr", "seed"]].drop_duplicates().values.tolist()
    assert order == [["none", 0.1, 1], ["none", 0.1, 0], ["bn", 0.3, 1], ["bn", 0.3, 0], ["bn", 0.1, 1], ["bn", 0.1, 0]]
    assert df["hidden"].eq("32,32").all() and df["dataset"].eq("mnist").all() and df["tags"].eq("").all()


def test_changing_any_setting_trains_again_and_a_rerun_trains_nothing(tmp_path, data_root):
    run_sweep([RUN], [0], tmp_path, progress=False)
    assert len(trained(tmp_path)) == 1
    for changed in (RUN.replace(steps=13), RUN.replace(lr=0.11), RUN.replace(batch_size=33), RUN.replace(test_size=301)):
        run_sweep([changed], [0], tmp_path, progress=False)
    assert len(trained(tmp_path)) == 5
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    run_sweep([RUN], [0], tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes


def test_a_bumped_cache_version_trains_again(tmp_path, data_root, monkeypatch):
    run_sweep([RUN], [0], tmp_path, progress=False)
    monkeypatch.setattr(experiment, "CACHE_VERSION", experiment.CACHE_VERSION + 1)
    run_sweep([RUN], [0], tmp_path, progress=False)
    assert len(trained(tmp_path)) == 2


@pytest.mark.exact
@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_rows"])
def test_a_damaged_cached_run_is_named_set_aside_and_trained_again(tmp_path, data_root, capsys, damage):
    first = run_sweep([RUN], [0], tmp_path, progress=False)
    table = tmp_path / f"{RUN.key(0)}.csv.gz"
    data = table.read_bytes()
    if damage == "truncate":
        table.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        table.write_bytes(gzip.compress(gzip.decompress(data).replace(b"0.", b"1.", 1), mtime=0))
    else:
        table.write_bytes(gzip.compress(b"\n".join(gzip.decompress(data).split(b"\n")[:2]) + b"\n", mtime=0))
    again = run_sweep([RUN], [0], tmp_path, progress=False)
    message = capsys.readouterr().out
    assert f"damaged cached run {RUN.key(0)}.json" in message and "computing it again" in message
    assert (tmp_path / "damaged" / table.name).exists()
    pd.testing.assert_frame_equal(numbers(again), numbers(first), check_exact=True)


@pytest.mark.slow
def test_a_run_that_raises_is_recorded_the_others_finish_and_a_rerun_retries_only_it(tmp_path, data_root, monkeypatch):
    with pytest.raises(SweepError, match=r"2 of 4 runs failed .*the 2 others are saved.*\n  reg_cf=0.5, seed 0: ValueError: "
                                         r"reg_cf=0.5 but no layer"):
        run_sweep([RUN, FAILS], [0, 1], tmp_path, workers=2, progress=False)
    assert trained(tmp_path) == {RUN.key(0), RUN.key(1)}
    error = (tmp_path / f"{FAILS.key(1)}.error.txt").read_text()
    assert error.startswith(FAILS.to_json()) and "Traceback" in error and "ValueError: reg_cf=0.5" in error

    calls = []
    real = sweep._train
    monkeypatch.setattr(sweep, "_train", lambda jobs, *a: calls.extend(seed for _, seed in jobs) or real(jobs, *a))
    with pytest.raises(SweepError):
        run_sweep([RUN, FAILS], [0, 1], tmp_path, workers=1, progress=False)
    assert calls == [0, 1]  # only the failed run (seeds 0 and 1) is tried again; RUN is read back


class DyingExecutor(cf.Executor):
    """A real process pool whose worker dies (os._exit) while running the run of ``lr`` ``dies_at``."""

    def __init__(self, dies_at):
        self.pool, self.dies_at = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")), dies_at

    def submit(self, fn, jobs, *args):
        if json.loads(jobs[0][0])["lr"] == self.dies_at:
            return self.pool.submit(os._exit, 3)
        return self.pool.submit(fn, jobs, *args)

    def shutdown(self, wait=True, **kw):
        self.pool.shutdown(wait=wait)


@pytest.mark.slow
def test_a_killed_worker_keeps_every_finished_run_and_a_rerun_trains_only_the_missing_ones(tmp_path, data_root):
    runs = [RUN, RUN.replace(lr=0.3)]
    executor = DyingExecutor(dies_at=0.3)
    with pytest.raises(SweepError, match="BrokenProcessPool"):
        run_sweep(runs, [0], tmp_path, executor=executor, progress=False)
    executor.shutdown()
    assert RUN.key(0) in trained(tmp_path) and runs[1].key(0) not in trained(tmp_path)
    before = (tmp_path / f"{RUN.key(0)}.csv.gz").stat().st_mtime_ns
    df = run_sweep(runs, [0], tmp_path, workers=1, progress=False)
    assert (tmp_path / f"{RUN.key(0)}.csv.gz").stat().st_mtime_ns == before and df["lr"].nunique() == 2


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(TypeError, match="runs must be bnlib.lab.experiment.Run configs, got dict at position 1"):
        run_sweep([RUN, {"lr": 0.1}], [0], tmp_path)
    with pytest.raises(ValueError, match="seeds must be integers >= 0, got -1"):
        run_sweep([RUN], [-1], tmp_path)
    with pytest.raises(ValueError, match="workers must be an integer >= 1 or None, got 0"):
        run_sweep([RUN], [0], tmp_path, workers=0)
    with pytest.raises(ValueError, match='executor: unknown \'ray\''):
        run_sweep([RUN], [0], tmp_path, executor="ray")
    assert not list(tmp_path.iterdir())


def test_workers_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("BNLIB_WORKERS", "3")
    assert sweep.default_workers() == 3
    monkeypatch.setenv("BNLIB_WORKERS", "two")
    with pytest.raises(ValueError, match=r"\$BNLIB_WORKERS must be an integer >= 1, got 'two'"):
        sweep.default_workers()


def test_kept_weights_rebuild_the_trained_network(tmp_path, data_root):
    run = RUN.replace(steps=100, eval_every=100, keep_weights=True)  # long enough for the running statistics to settle
    table = run_sweep([run], [0], tmp_path, progress=False)
    net = trained_model(run, 0, tmp_path)
    mean, std = dataset_stats("mnist")
    acc = evaluate(net, experiment.run_data(run)["test"], mean=mean, std=std, device="cpu")[1]
    assert acc == pytest.approx(table["test_acc"].iloc[-1], abs=1e-9) and acc > 0.5
    with pytest.raises(FileNotFoundError, match="no finished run with weights for seed 1"):
        trained_model(run, 1, tmp_path)
    with pytest.raises(ValueError, match="does not keep its weights"):
        trained_model(RUN, 0, tmp_path)
    (tmp_path / f"{run.key(0)}.pt").write_bytes(b"broken")
    assert RunCache(tmp_path).load(run, 0) is None  # weights checksum differs: set aside


def test_call_sweep_keys_by_the_function_source_so_two_lambdas_never_share_results(tmp_path):
    first = call_sweep(lambda x, seed: pd.DataFrame({"y": [x]}), [{"x": 1}], [0], tmp_path, progress=False)
    second = call_sweep(lambda x, seed: pd.DataFrame({"y": [x * 10]}), [{"x": 1}], [0], tmp_path, progress=False)
    assert first["y"].tolist() == [1] and second["y"].tolist() == [10]


def test_call_sweep_stores_checksummed_tables_and_recomputes_a_damaged_one(tmp_path, capsys):
    """call_sweep's calls go through the same checked cache as run_sweep's runs: a table whose bytes changed is named,
    set aside and computed again. (Calls are counted by what f prints: a list f appended to would be part of what it
    reads, and of its key.)"""

    def f(x, seed):
        print("f is computing")
        return pd.DataFrame({"y": [x + 0.1 * seed]})

    def calls() -> int:
        return capsys.readouterr().out.count("f is computing")

    first = call_sweep(f, [{"x": 1}, {"x": 2}], [0, 1], tmp_path, progress=False)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".gz"] * 4 + [".json"] * 4 and calls() == 4
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert meta["fn"].endswith("f") and meta["version"] == CACHE_VERSION and meta["rows"] == 1 and len(meta["sha256"]) == 64
    assert call_sweep(f, [{"x": 1}, {"x": 2}], [0, 1], tmp_path, progress=False).equals(first) and calls() == 0
    table = sorted(tmp_path.glob("*.csv.gz"))[0]
    table.write_bytes(gzip.compress(b"y,x,seed\n9.9,1,0\n"))  # same shape, other numbers
    again = call_sweep(f, [{"x": 1}, {"x": 2}], [0, 1], tmp_path, progress=False)
    out = capsys.readouterr().out
    assert again.equals(first) and out.count("f is computing") == 1  # only the damaged call ran again
    assert "table checksum differs" in out and (tmp_path / "damaged" / table.name).exists()


def test_no_single_bit_flip_or_malformed_record_escapes_the_cache_check(tmp_path, capsys):
    """Every single-bit flip of a stored table, and a record that is JSON of the wrong shape, reads as "not stored"
    (set aside, named, computed again) or as the very table stored; none raises (issue 37: a raw zlib.error or
    AttributeError broke every rerun)."""
    text = "step,test_acc\n0,0.1\n10,0.52\n"
    original = pd.read_csv(io.StringIO(text))
    folder = tmp_path / "cache"
    stored = RunCache(tmp_path / "clean")
    stored.store("k", {"fn": "f", "config": {}, "seed": 0}, text)
    clean = {kind: path.read_bytes() for kind, path in stored.paths("k").items() if path.exists()}
    outcomes = {"set aside": 0, "same table": 0}
    damages = [("table", bytes(b ^ (1 << bit) if i == at else b for i, b in enumerate(clean["table"])))
               for at in range(len(clean["table"])) for bit in range(8)]
    damages += [("meta", b"null"), ("meta", b"[]"), ("meta", b'"x"'), ("meta", b"{}"), ("table", b"")]
    for kind, data in damages:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for k, content in clean.items():
            (folder / stored.paths("k")[k].name).write_bytes(data if k == kind else content)
        got = RunCache(folder).fetch("k")
        if got is None:
            outcomes["set aside"] += 1
            assert not (folder / "k.json").exists() and (folder / "damaged" / "k.json").exists()
        else:
            pd.testing.assert_frame_equal(got, original)
            outcomes["same table"] += 1
    assert outcomes["set aside"] >= len(damages) // 2  # most flips are caught; the rest (gzip header bytes) change nothing
    assert f"damaged cached run k.json in {folder}" in capsys.readouterr().out


@pytest.mark.slow
def test_workers_stop_when_the_sweeping_process_is_killed(tmp_path, data_root):
    import signal
    import subprocess
    import sys
    import time

    script = (f"from bnlib.lab.experiment import Run; from bnlib.lab.sweep import run_sweep\n"
              f"run = Run.from_json({RUN.replace(steps=100_000, eval_every=100_000).to_json()!r})\n"
              f"run_sweep([run, run.replace(lr=0.2)], [0], {str(tmp_path)!r}, workers=2, progress=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    children = []
    for _ in range(120):  # wait for the two workers to start
        time.sleep(0.5)
        found = subprocess.run(["pgrep", "-f", "-P", str(parent.pid), "spawn_main"], capture_output=True,
                               text=True).stdout.split()
        if len(found) == 2:
            children = [int(p) for p in found]
            break
    assert len(children) == 2, "the workers never started"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30  # a worker still importing torch notices when it starts
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]
                                         for pid in children):
        time.sleep(0.2)
    alive = [pid for pid in children if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    assert not alive, f"workers {alive} kept training after their parent was killed"


@pytest.mark.slow
def test_batched_runs_train_together_and_are_cached_one_by_one(tmp_path, data_root):
    """Batched MLP runs that differ in lr and seed train as one model per worker; in the kernel or split over 2 workers
    (other groupings) the tables are the same to float32 rounding, and adding a seed later trains only the new jobs
    and reads the others back exactly."""
    base = RUN.replace(batched=True)
    runs = [base, base.replace(lr=0.3)]
    kernel = run_sweep(runs, [0, 1], tmp_path / "kernel", workers=1, progress=False)
    pool = run_sweep(runs, [0, 1], tmp_path / "pool", workers=2, progress=False)
    pd.testing.assert_frame_equal(numbers(pool), numbers(kernel), **GROUPING_TOLERANCE)
    alone = train_run(base.replace(lr=0.3), 1).assign(**sweep._columns(base.replace(lr=0.3)), seed=1)
    pd.testing.assert_frame_equal(numbers(kernel[(kernel["lr"] == 0.3) & (kernel["seed"] == 1)]), numbers(alone),
                                  check_dtype=False, **GROUPING_TOLERANCE)
    assert len(trained(tmp_path / "kernel")) == 4
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "kernel").iterdir()}
    more = run_sweep(runs, [0, 1, 2], tmp_path / "kernel", workers=1, progress=False)
    assert len(trained(tmp_path / "kernel")) == 6 and all(
        (tmp_path / "kernel" / name).stat().st_mtime_ns == t for name, t in before.items())
    pd.testing.assert_frame_equal(numbers(more[more["seed"] < 2]), numbers(kernel), check_exact=True)
    assert sweep._tasks([(r, s) for r in runs for s in (0, 1, 2)] + [(RUN, 0)], parts=2) == [
        [(RUN, 0)], [(runs[0], 0), (runs[0], 2), (runs[1], 1)], [(runs[0], 1), (runs[1], 0), (runs[1], 2)]]


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_quietly_and_keeps_the_finished_runs(tmp_path, data_root):
    """SIGINT to the process group (Ctrl-C; Jupyter's interrupt and shutdown): the sweep raises KeyboardInterrupt, its
    workers stop (the long run in progress too) without tracebacks of their own, and the finished run stays on disk."""
    import signal
    import subprocess
    import sys
    import time

    long_run = RUN.replace(steps=100_000, eval_every=100_000, lr=0.2)
    script = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also where the "
              f"tests run in the background (which ignores SIGINT)\n"
              f"from bnlib.lab.experiment import Run; from bnlib.lab.sweep import run_sweep\n"
              f"run_sweep([Run.from_json({RUN.to_json()!r}), Run.from_json({long_run.to_json()!r})], [0], {str(tmp_path)!r}, "
              f"workers=2, progress=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and RUN.key(0) not in trained(tmp_path):
        time.sleep(0.5)
    assert RUN.key(0) in trained(tmp_path), "the short run never finished"
    workers = [int(p) for p in subprocess.run(["pgrep", "-f", "-P", str(parent.pid), "spawn_main"], capture_output=True,
                                              text=True).stdout.split()]
    os.killpg(parent.pid, signal.SIGINT)
    _, stderr = parent.communicate(timeout=60)
    assert parent.returncode != 0 and "KeyboardInterrupt" in stderr and "Process SpawnProcess" not in stderr, stderr[-2000:]
    time.sleep(1)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    assert trained(tmp_path) == {RUN.key(0)}


@pytest.fixture
def fake_server():
    """Start a TCP server on a free port that answers every connection with ``reply`` (None: silence); yields a
    function that starts one and returns its "dask://127.0.0.1:PORT"."""
    import socket
    import threading

    servers = []

    def start(reply: bytes | None) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve():
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    if reply is not None:
                        conn.sendall(reply)
                    servers.append(conn)  # held open, as an HTTP server waiting for a request does

        threading.Thread(target=serve, daemon=True).start()
        return f"dask://127.0.0.1:{server.getsockname()[1]}"

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize("reply, problem", [
    (None, "it said nothing within 1 s"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "it answered b'HTTP/1.1 400 Bad'"),  # read as a length, 3 EiB: Dask's MemoryError
], ids=["silent", "http"])
def test_an_address_that_is_not_a_dask_scheduler_is_refused_in_bounded_time(fake_server, reply, problem):
    address = fake_server(reply)
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        sweep.check_dask_scheduler(address, timeout=1.0)
    assert time.perf_counter() - start < 5
    where = address.removeprefix("dask://")
    assert str(info.value) == (f"executor: not a Dask scheduler at {where}: {problem} "
                               "(the dashboard is usually 8787, the scheduler 8786)")


def test_a_closed_port_is_refused_at_once():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]  # free again once closed
    with pytest.raises(ValueError, match=rf"cannot connect to a Dask scheduler at 127.0.0.1:{closed}: .*8786"):
        sweep.check_dask_scheduler(f"dask://127.0.0.1:{closed}", timeout=1.0)


def test_a_dask_scheduler_passes_the_check():
    pytest.importorskip("dask.distributed")
    from dask.distributed import Scheduler

    async def check() -> tuple[str, int]:
        async with Scheduler(host="127.0.0.1", port=0, dashboard_address=None) as scheduler:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, sweep.check_dask_scheduler, scheduler.address, 5.0), scheduler.port

    (host, port), expected = asyncio.run(check())
    assert (host, port) == ("127.0.0.1", expected)
