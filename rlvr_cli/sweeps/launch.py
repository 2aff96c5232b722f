"""`rlvr sweep`: a grid of `rlvr train` runs (optimizer x learning rate x adapter x rank x seed x any override).

A sweep file (YAML, see `sweeps/`):

    name: sgd_vs_adamw
    base: [grpo.max_steps=30]                  # overrides of every cell
    axes:
      optimizer:                               # each optimizer with its own learning-rate grid:
        sgd: {lr: [0.01, 0.1]}                 #   a list, or
        adamw: {lr: {min: 1e-6, max: 1e-4, per_decade: 1}}   # a log grid: 1e-6, 1e-5, 1e-4
      adapter:                                 # each adapter with its rank list (full: none)
        full: {}
        lora: {r: [1, 8]}
      seed: [0, 1]
      overrides: {grpo.beta: [0.0, 0.04]}      # any other override, as a list

Cells are the product of the axes. The runs go through Hydra's multirun: `rlvr sweep` writes the
sweep directory and starts `python -m rlvr_cli.sweeps.job --multirun cell=0,1,...` with the chosen
launcher plugin (basic: one after another in one process; submitit_local: separate processes, several
at a time; submitit_slurm: SLURM jobs). Each job runs one cell as a `rlvr train` subprocess, so a
cell's crash or Ctrl-C is contained and recorded in its own run directory.

Under submitit_slurm a cell is one SLURM job sized by its `distributed` group (`rlvr_cli.sweeps.slurm`:
`distributed.num_machines` nodes, one task per node, N times the per-process GPUs, CPUs and memory for
`distributed.num_processes=N`). The submitit launcher takes one set of job settings per multirun, so cells are
grouped by job settings and each group is one multirun, the groups one after another: `--max-parallel` then
bounds the jobs of the whole sweep (SLURM's array throttle only counts within one array), one multirun at a time
writes `.hydra/`, and a Ctrl-C has one multirun to stop. The price: a group starts when the previous one has
ended. Most sweeps have one group (the same `distributed` settings in every cell).

The sweep file is read once: `plan` parses it, checks the launcher, expands the cells and returns one
`rlvr_cli.sweeps.grid.Sweep`, which `run` takes to the checks (`check_cells`: one Hydra composition per distinct
set of config-group choices, `rlvr_cli.core.compose.Composer`), the sweep directory and its manifest.

Sweep directory: `sweep.yaml` (the file's copy), `manifest.json` (the cells: name, run_dir,
overrides, axes), `runs/<cell>/` (one `rlvr train` run directory each), `.hydra/` (launcher files),
`.lock` and `.lock.owner` (`sweep_lock`: one `rlvr sweep` at a time per directory).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlvr_cli.core.compose import Composer, compose, quote_value, run_config
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.groups import searchpath_overrides
from rlvr_cli.core.parent_death import on_parent_death
from rlvr_cli.core.run_config import RunConfig
from rlvr_cli.core.run_dir import COMPLETED, DIVERGED, PRUNED, RUNNING, run_state
from rlvr_cli.core.targets import check_hydra_overrides, targets
from rlvr_cli.sweeps import slurm
from rlvr_cli.sweeps.grid import Cell, Sweep, load_sweep, make_sweep
from rlvr_cli.sweeps.manifest import ManifestCell, manifest_of, manifest_path, read_manifest, write_manifest
from rlvr_cli.sweeps.manifest import manifest_cells as manifest_cells  # re-exported: it was defined here
from rlvr_cli.sweeps.slurm import JobSettings


def launcher_configs() -> dict[str, str]:
    """`--launcher` value -> the option of Hydra's `hydra/launcher` config group that runs it, derived from the
    group's files: Hydra's own `basic`, plus one entry per `conf/hydra/launcher/<file>.yaml`.

    A file that extends a plugin's registered config through its defaults list (`local.yaml`: `defaults:
    [submitit_local]`, hydra-submitit-launcher's config, with rlvr's settings on top) is that launcher's
    settings: `submitit_local -> local`. (It cannot share the plugin config's name: a file named
    `submitit_local.yaml` extending `submitit_local` would include itself, and one without the defaults list
    relies on Hydra's deprecated automatic schema matching.) A file without such a default is a launcher of its
    own, under its file name, with `_target_` and every field of the launcher in it.
    """
    from omegaconf import OmegaConf

    from rlvr_cli.core.groups import config_file, group_options

    configs = {"basic": "basic"}  # Hydra's default launcher (conf/sweep_job.yaml): one cell after another
    for path in (config_file(f"hydra/launcher/{name}.yaml") for name in group_options("hydra/launcher")):
        defaults = OmegaConf.load(path).get("defaults") or []
        base = next((d for d in defaults if isinstance(d, str) and d != "_self_"), None)
        configs[base or path.stem] = path.stem
    return configs


#: The valid `--launcher` values: basic, submitit_local, submitit_slurm (`launcher_configs`).
LAUNCHERS = tuple(launcher_configs())
#: Statuses that count as a result: --resume keeps them.
DONE = (COMPLETED, DIVERGED, PRUNED)
#: The sweep directory's lock file (`filelock`, held by `rlvr sweep` while it runs) and the file naming its holder.
LOCK_FILE = ".lock"
LOCK_OWNER_FILE = ".lock.owner"


def copy_sweep_file(path: Path, sweep_dir: Path) -> None:
    """Copy the sweep file into its sweep directory as `sweep.yaml`, unless it is that file already (a sweep file
    kept in its own output directory: `shutil.copyfile` refuses to copy a file onto itself)."""
    target = sweep_dir / "sweep.yaml"
    if not (target.exists() and os.path.samefile(path, target)):
        shutil.copyfile(path, target)


def check_cells(cells: Sequence[Cell], extra: Sequence[str]) -> list[RunConfig]:
    """Compose and validate every cell's config (with the command line's `extra` overrides) before anything runs;
    return their typed configs (`rlvr_cli.core.run_config.RunConfig`), in the cells' order.

    Each cell is composed once, through one `rlvr_cli.core.compose.Composer` (Hydra's defaults list once per
    distinct set of config-group choices, not once per cell) and validated once (`run_config(conformed=True)`: its
    types were checked by the composition). A cell that fails is composed and validated again the plain way
    (`compose`, `run_config`), so the error is exactly theirs; the first failing cell in order is reported.

    Args:
        cells: the sweep's cells (`rlvr_cli.sweeps.grid.expand`).
        extra: override strings of every cell, after its own (the command line's, not `hydra.*`).

    Raises:
        BadInput: the first bad cell's error, prefixed with its name (`cell NAME: ...`).
    """
    composer = Composer()
    configs = []
    for cell in cells:
        overrides = [*cell.overrides, *extra]
        try:
            composed = composer(overrides)  # a composition that fails raises compose's own error
            try:
                cfg = run_config(composed, conformed=True)
            except BadInput:  # the plain way, for exactly its message
                cfg = run_config(compose(overrides))
        except BadInput as e:
            raise BadInput(f"cell {cell.name}: {e}") from None
        configs.append(cfg)
    return configs


def cell_job(cfg: RunConfig, launcher: str, settings: dict[str, Any] | None) -> JobSettings | None:
    """The SLURM job of one cell (`rlvr_cli.sweeps.slurm.job_settings` from its `distributed.num_processes` and
    `distributed.num_machines`); None for the other launchers, which run cells on this machine.

    Args:
        cfg: the cell's typed config (`check_cells`).
        launcher: a `--launcher` value.
        settings: the multirun's `hydra.launcher` settings (`rlvr_cli.sweeps.slurm.launcher_settings`).
    """
    if launcher != "submitit_slurm" or settings is None:
        return None
    return slurm.job_settings(settings, cfg.distributed.num_processes, cfg.distributed.num_machines)


def job_groups(todo: list[int], jobs: list[JobSettings | None]) -> list[tuple[JobSettings | None, list[int]]]:
    """Cells `todo` grouped by their job settings (`jobs[i]` for cell i), in the order of each group's first cell:
    one multirun per group (the submitit launcher takes one set of settings per multirun)."""
    groups: dict[JobSettings | None, list[int]] = {}
    for i in todo:
        groups.setdefault(jobs[i], []).append(i)
    return list(groups.items())


def status(sweep_dir: Path, cell: ManifestCell | dict[str, Any]) -> str:
    """A cell's status (`rlvr_cli.core.run_dir.run_state`): `pending` without a summary.json, `unknown` when it does
    not parse, `running` while its process is alive, `dead` when it was killed before its final status, else the
    final status its run wrote.

    Args:
        sweep_dir: the sweep directory; `cell["run_dir"]` is relative to it.
        cell: one cell of the manifest (`read_manifest`).
    """
    return run_state(Path(sweep_dir) / cell["run_dir"]).status


def lock_holder(sweep_dir: Path) -> str:
    """Who holds the lock of `sweep_dir`, from `.lock.owner`: `pid N on HOST since YYYY-mm-dd HH:MM:SS`, or
    `another process` when the file is missing or damaged."""
    try:
        owner = json.loads((Path(sweep_dir) / LOCK_OWNER_FILE).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner["since"])))
        return f"pid {int(owner['pid'])} on {owner['host']} since {since}"
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the lock of a sweep directory while inside: `filelock.FileLock(SWEEP_DIR/.lock)` taken without waiting,
    with this process's host, pid and start time (unix seconds) written to `SWEEP_DIR/.lock.owner` for whoever is
    refused. The directory (and its parents) is created. The lock is released on the way out, whatever the way
    (exception, Ctrl-C); a killed holder's lock is released by the OS (flock), and its stale `.lock.owner` is
    overwritten by the next holder.

    Raises:
        BadInput: another process holds the lock (one line naming it), or the directory cannot be created.
    """
    from filelock import FileLock, Timeout

    sweep_dir = Path(sweep_dir)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create sweep directory {sweep_dir}: {one_line(e)}") from None
    lock = FileLock(sweep_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BadInput(f"{sweep_dir} is in use by another rlvr sweep ({lock_holder(sweep_dir)}); wait for it to "
                       "end, or pick another --output-dir") from None
    owner = sweep_dir / LOCK_OWNER_FILE
    try:
        owner.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}) + "\n")
        yield
    finally:
        owner.unlink(missing_ok=True)  # before the release: never the next holder's file
        lock.release()


def prepare(sweep: Sweep, sweep_dir: Path, resume: bool, check: bool = True) -> tuple[list[ManifestCell], list[int]]:
    """Create or reopen a sweep directory; return the manifest's cells and the indices of those to run.

    Call it holding the directory's lock (`sweep_lock`). A new directory gets `sweep.yaml` and `manifest.json`
    (written atomically). With `resume`, completed and diverged cells are kept and every other cell is run again
    (pending, failed, interrupted, dead: killed while running, unknown: a summary.json that does not parse); the
    old run directory of such a cell is moved to `runs/.attempts/<cell>-<time>` first, so nothing is lost.
    `check=False` skips composing a new sweep's cells (`check_cells`), for a caller that has just done it.

    Args:
        sweep: the sweep (`plan`, or `rlvr_cli.sweeps.grid.read_sweep`), with its command line's overrides.
        sweep_dir: the sweep directory (created when missing).
        resume: reopen a directory that holds this sweep.
        check: compose and validate a new sweep's cells first.

    Raises:
        BadInput: the directory already holds a sweep and `resume` is off; or `resume` is on and the
            manifest does not parse (`read_manifest`), the sweep file's cells differ from the manifest's, or a
            cell's run is still alive (left running by a sweep that was killed: its process is named).
    """
    fresh = manifest_of(sweep)
    if manifest_path(sweep_dir).is_file():
        if not resume:
            raise already_a_sweep(sweep_dir)
        manifest = read_manifest(sweep_dir)
        if [c["overrides"] for c in manifest["cells"]] != [c["overrides"] for c in fresh["cells"]]:
            raise BadInput(f"{sweep_dir} holds a different sweep than {sweep.path}; pick another --output-dir")
    else:
        if check:
            check_cells(sweep.cells, sweep.extra)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        copy_sweep_file(sweep.path, sweep_dir)
        manifest = fresh
        write_manifest(sweep_dir, manifest)
    states = [run_state(sweep_dir / cell["run_dir"]) for cell in manifest["cells"]]
    for cell, state in zip(manifest["cells"], states, strict=True):
        if state.status == RUNNING:
            raise BadInput(f"cell {cell['name']} of {sweep_dir} is still running (pid {state.summary.get('pid')} on "
                           f"{state.summary.get('host')}), outside any rlvr sweep; wait for it or stop it, then "
                           "--resume")
    todo = []
    for i, (cell, state) in enumerate(zip(manifest["cells"], states, strict=True)):
        if state.status in DONE:
            continue
        old = sweep_dir / cell["run_dir"]
        if old.exists() or old.is_symlink():
            attempts = sweep_dir / "runs" / ".attempts"
            attempts.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target, n = attempts / f"{cell['name']}-{stamp}", 1
            while target.exists():  # a second attempt within the second: never onto the first
                n += 1
                target = attempts / f"{cell['name']}-{stamp}-{n}"
            old.rename(target)
        todo.append(i)
    return manifest["cells"], todo


def already_a_sweep(sweep_dir: Path) -> BadInput:
    """The error for a new sweep into a directory that holds one."""
    return BadInput(f"{sweep_dir} already holds a sweep; add --resume to finish it, or pick another --output-dir")


def multirun_command(sweep_dir: Path, todo: list[int], launcher: str, max_parallel: int,
                     launcher_overrides: list[str]) -> list[str]:
    """The `python -m rlvr_cli.sweeps.job --multirun ...` command that runs cells `todo` through Hydra
    with `launcher` (one of `LAUNCHERS`, checked by `run`)."""
    cmd = [sys.executable, "-m", "rlvr_cli.sweeps.job", "--multirun", *searchpath_overrides(),
           f"sweep_dir={quote_value(str(sweep_dir.resolve()))}", f"cell={','.join(map(str, todo))}",
           f"hydra/launcher={launcher_configs()[launcher]}"]
    if launcher == "submitit_local":  # submitit runs a whole batch at once; Hydra's sweeper cuts the batches
        cmd.append(f"hydra.sweeper.max_batch_size={max_parallel}")  # time limit, GPUs: conf/hydra/launcher/local.yaml
    if launcher == "submitit_slurm":  # partition, GPUs, time limit: conf/hydra/launcher/slurm.yaml
        cmd += [f"hydra.launcher.array_parallelism={max_parallel}",
                "+hydra.callbacks.quiet_polling._target_=rlvr_cli.sweeps.slurm.QuietPolling"]  # no sacct needed
    return cmd + launcher_overrides


def plan(sweep_file: Path, overrides: Sequence[str] = (), launcher: str = "basic", max_parallel: int = 1) -> Sweep:
    """Read a sweep for `rlvr sweep`, once: parse its file, check the launcher, expand its cells.

    In this order, so that the first error is the same as ever: the file is parsed (`load_sweep`); then
    `--max-parallel`, `--launcher` and the `hydra.*` overrides are checked (the launcher settings are read by Hydra
    itself, `rlvr_cli.sweeps.slurm.launcher_settings`, under submitit_slurm or when there are launcher overrides);
    then the cells are expanded (`rlvr_cli.sweeps.grid.expand`). Composing the cells' configs is `run`'s job.

    Args:
        sweep_file: the sweep YAML.
        overrides: the command line's overrides of every cell; those starting with `hydra.` go to the launcher
            (e.g. `hydra.launcher.partition=gpu` for SLURM).
        launcher: basic | submitit_local | submitit_slurm (`LAUNCHERS`).
        max_parallel: jobs at a time (submitit launchers), >= 1.

    Returns:
        The `rlvr_cli.sweeps.grid.Sweep`, with its launcher settings.

    Raises:
        BadInput: a missing or unparsable sweep file, a `_target_` in it or one in a `hydra.*` override that is not
            Hydra's or rlvr's (`rlvr_cli.core.targets`), `--max-parallel` < 1, an unknown launcher, a launcher
            override Hydra refuses or one that rlvr sets per cell under submitit_slurm (`hydra.launcher.nodes`),
            a bad grid (naming its place in the file).
    """
    data = load_sweep(sweep_file)
    for at, target in targets(data):  # a value of an override: composing the cells would refuse it too, later
        raise BadInput(f"{sweep_file}: {at}={target!r}: a sweep file names no _target_; pick the optimizer or "
                       f"adapter by name (optimizer=NAME, adapter=NAME)")
    launcher_overrides = [o for o in overrides if o.startswith("hydra.")]
    base = data.get("base")
    check_hydra_overrides([*overrides, *([str(o) for o in base] if isinstance(base, list) else [])])
    if max_parallel < 1:
        raise BadInput(f"--max-parallel must be >= 1, got {max_parallel}")
    if launcher not in LAUNCHERS:
        raise BadInput(f"unknown launcher '{launcher}'; valid launchers: {', '.join(LAUNCHERS)}")
    settings = None
    if launcher == "submitit_slurm":
        slurm.check_launcher_overrides(launcher_overrides)
    if launcher == "submitit_slurm" or launcher_overrides:  # Hydra's refusal of a launcher override: one line, now
        settings = slurm.launcher_settings(launcher_configs()[launcher], launcher_overrides)
    return make_sweep(data, sweep_file, overrides, launcher, max_parallel, settings)


def run(sweep: Sweep, sweep_dir: Path, resume: bool = False, dry_run: bool = False
        ) -> tuple[list[ManifestCell], list[int], int, list[JobSettings | None]]:
    """`rlvr sweep`: check every cell, write the sweep directory, run what is left through Hydra's multirun (one
    multirun per group of cells with the same job settings, one after another: see the module docstring).

    Args:
        sweep: the sweep, read once (`plan`): its cells, the command line's overrides and its launcher.
        sweep_dir: where the sweep lives.
        resume: finish a sweep directory that exists: skip completed and diverged cells.
        dry_run: compose and check the cells, write nothing, run nothing.

    The sweep directory is locked (`sweep_lock`) from before it is read until the multirun has ended, also on
    Ctrl-C: the running cells end `interrupted` (`stop_cells` under submitit_local; under basic and SLURM the
    Ctrl-C reaches the cells through the multirun), no further cell starts, and the sweep waits for them unless a
    second Ctrl-C comes. A dry run takes no lock.

    Returns:
        `(cells, indices run, exit code, jobs)`: the cells as the manifest lists them
        (`rlvr_cli.sweeps.manifest.manifest_of`); the exit code is 0 for a dry run, else the first non-zero exit
        code of the multiruns (a failed multirun does not stop the next group's); `jobs[i]` is cell i's SLURM job
        (`rlvr_cli.sweeps.slurm.JobSettings`) under submitit_slurm when it runs now or in a dry run, else None.

    Raises:
        BadInput: before any run starts (a bad cell, naming it; a damaged manifest under `resume`; a directory
            that holds another sweep); also when another `rlvr sweep` holds the directory (naming it).
    """
    launcher, settings = sweep.launcher, sweep.launcher_settings
    # Bad cells and a damaged manifest are refused before the lock, so that nothing (the lock file included) is
    # written; a sweep in the directory is refused under it (the lock's message names the running one).
    checked = dry_run or not manifest_path(sweep_dir).is_file()
    configs: dict[int, RunConfig] = {}
    if checked:  # a new sweep: bad cells fail before the directory exists
        configs = dict(enumerate(check_cells(sweep.cells, sweep.extra)))
        if dry_run:
            return manifest_of(sweep)["cells"], [], 0, [cell_job(configs[i], launcher, settings)
                                                         for i in range(len(sweep.cells))]
    elif resume:
        read_manifest(sweep_dir)  # a damaged manifest: one line (prepare reads it again, under the lock)
    with sweep_lock(sweep_dir):
        cells, todo = prepare(sweep, sweep_dir, resume, check=not checked)
        code, jobs = launch_cells(sweep, sweep_dir, cells, todo, configs)
        return cells, todo, code, jobs


def launch_cells(sweep: Sweep, sweep_dir: Path, cells: Sequence[ManifestCell], todo: Sequence[int],
                 configs: dict[int, RunConfig] | None = None) -> tuple[int, list[JobSettings | None]]:
    """Run cells `todo` of the manifest's `cells` through Hydra's multirun with the sweep's launcher, one multirun per
    group of cells with the same SLURM job settings, one after another; call it holding the directory's lock.

    Args:
        sweep: the sweep (its launcher, `--max-parallel`, launcher overrides and settings).
        sweep_dir: the sweep directory, whose manifest.json lists `cells`.
        cells: the manifest's cells; todo: the indices to run.
        configs: cell index -> its typed config, where the caller has it (else composed here for SLURM jobs).

    Returns:
        `(exit code, jobs)`: the first non-zero exit code of the multiruns (0: all ended 0); `jobs[i]`, cell i's
        SLURM job under submitit_slurm when it runs now, else None.

    Raises:
        KeyboardInterrupt: Ctrl-C, once the running cells have ended `interrupted` (`wait_for`).
    """
    launcher, settings, configs = sweep.launcher, sweep.launcher_settings, configs or {}
    jobs: list[JobSettings | None] = [None] * len(cells)
    if launcher == "submitit_slurm":
        composer = Composer()
        for i in todo:  # a resumed sweep's cells are composed now (their overrides from the manifest)
            cfg = configs[i] if i in configs else run_config(composer(cells[i]["overrides"]), conformed=True)
            jobs[i] = cell_job(cfg, launcher, settings)
    code = 0
    for job, group in job_groups(list(todo), jobs):
        cmd = multirun_command(sweep_dir, group, launcher, sweep.max_parallel,
                               [*sweep.launcher_overrides, *(job.overrides() if job else [])])
        # submitit_local: its jobs run in sessions of their own, which a Ctrl-C in the terminal never reaches, so
        # rlvr stops them itself; the multirun, in a session of its own too, ends with this process (SIGTERM on
        # its death, even by SIGKILL). basic: the Ctrl-C reaches the multirun and its cell, as before.
        local = launcher == "submitit_local"
        proc = subprocess.Popen(cmd, start_new_session=local, preexec_fn=on_parent_death if local else None)
        exit_code = wait_for(proc, functools.partial(stop_cells, sweep_dir, proc) if local else None)
        code = code or exit_code
    return code, jobs


def cell_processes(sweep_dir: Path) -> list[int]:
    """The pids of the `rlvr train` processes of this sweep's cells running on this machine: their command line
    carries `output_dir=<sweep_dir>/runs` (`rlvr_cli.sweeps.job`), also before they write a summary.json."""
    import psutil

    mark = f"output_dir={quote_value(str((sweep_dir / 'runs').resolve()))}"  # as rlvr_cli.sweeps.job writes it
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info.get("cmdline") or []
        if mark in cmdline and "train" in cmdline and p.pid != os.getpid():
            pids.append(p.pid)
    return pids


def stop_cells(sweep_dir: Path, multirun: subprocess.Popen) -> Callable[[], list[int]]:
    """Stop a `submitit_local` sweep on Ctrl-C: SIGTERM to the multirun process
    (started in its own session, so the terminal's Ctrl-C did not reach it: it starts no further cell and prints no
    traceback). Returns the function that `wait_for` calls until it returns no pid: SIGTERM to every cell process
    not signalled yet (`cell_processes`; each stops after its optimizer step, saves, and ends `interrupted`), and
    the pids of those still running."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(multirun.pid, signal.SIGTERM)
    signalled: set[int] = set()

    def running() -> list[int]:
        pids = cell_processes(sweep_dir)
        for pid in set(pids) - signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            signalled.add(pid)
        return pids

    return running


def wait_for(proc: subprocess.Popen, stop: Callable[[], Callable[[], list[int]]] | None = None,
             poll_s: float = 0.5) -> int:
    """Wait for the multirun process and return its exit code.

    On a first Ctrl-C, with `stop` (submitit_local: `stop_cells`, which ends the multirun and signals the cells):
    wait for the multirun and until no cell process is left (two polls in a row find none, so that a cell whose
    process was just starting is stopped too); without `stop` (basic, SLURM: the Ctrl-C reached the multirun, which
    ends its cells), wait for the multirun. On a second Ctrl-C, kill the multirun and SIGINT the cells (which makes
    them end at once, `interrupted`). Either way raise KeyboardInterrupt after.
    """
    try:
        return proc.wait()
    except KeyboardInterrupt:
        running: Callable[[], list[int]] = list
        try:
            running = stop() if stop else list
            proc.wait()
            quiet = 0
            while quiet < 2:
                quiet = 0 if running() else quiet + 1
                time.sleep(poll_s)
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            for pid in running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
        raise
