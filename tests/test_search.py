"""`rlvr sweep` with a `search:` section: a learning-rate search through Optuna studies, on real processes.

Trials are real `rlvr train` runs on tiny-random with a dense reward (completion length), so that runs differ and the
pruner (asynchronous successive halving) has something to compare; the study is Optuna's journal file in the sweep
directory, which the runs and the sweep open at the same time.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core import study as studies
from rlvr_cli.core.run_dir import EXIT_CODES, PRUNED, read_metrics

runner = CliRunner()
SMOKE = REPO / "sweeps" / "search_smoke.yaml"


def _search_file(tmp_path: Path, name: str = "s", **search) -> Path:
    """A search file like search_smoke.yaml with `search` keys replaced (a key given None is removed)."""
    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = name
    for key, value in search.items():
        if value is None:
            data["search"].pop(key, None)
        elif key == "axes":
            data["axes"] = value
        else:
            data["search"][key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- bad input: one line, before anything runs --------------------------------------------------------------------

BAD = {
    "sampler": ({"sampler": "bayes"}, "search.sampler: unknown sampler 'bayes'; valid: tpe, qmc, grid, random"),
    "pruner": ({"pruner": "hyper"}, "search.pruner: unknown pruner 'hyper'; valid: asha, sha, hyperband, median, none"),
    "range_order": ({"optimizer": {"sgd": {"lr": {"min": 0.1, "max": 0.01}}}},
                    "search.optimizer.sgd.lr: a range needs 0 < min < max <= 1, got min=0.1, max=0.01"),
    "range_above_one": ({"optimizer": {"sgd": {"lr": {"min": 0.1, "max": 2.0}}}}, "0 < min < max <= 1"),
    "range_zero": ({"optimizer": {"sgd": {"lr": {"min": 0, "max": 0.1}}}}, "0 < min < max <= 1"),
    "min_resource": ({"min_resource": 7}, "search.min_resource=7 is not below grpo.max_steps=6"),
    # issue 25: a first rung at the last step could only prune trials that had paid for every step
    "min_resource_at_max_steps": ({"min_resource": 6}, "search.min_resource=6 is not below grpo.max_steps=6"),
    # issue 25: step 1's reward is sampled before any optimizer step, the same for every trial of a cell
    "min_resource_one": ({"min_resource": 1}, "search.min_resource=1 places a rung at step 1, whose reward every"),
    "trials": ({"trials": 0}, "search.trials must be an integer >= 1, got 0"),
    "grid_axis_too": ({"axes": {"optimizer": {"sgd": {"lr": [0.1]}}, "seed": [0]}},
                      "axes.optimizer and search.optimizer both set the optimizers"),
    "lr_override_axis": ({"axes": {"overrides": {"optimizer.lr": [0.1]}}}, "axes.overrides sets the optimizer"),
    "unknown_key": ({"trails": 3}, "search.trails: unknown key"),
    # issue 26: numpy refused the seed after the sweep directory was made; a huge grid ran out of memory
    "seed_huge": ({"seed": 2**64}, "search.seed must be an integer in 0..2147483647, got 18446744073709551616"),
    "per_decade_huge": ({"per_decade": 10**12}, "search.per_decade must be an integer in 1..1000"),
    "unknown_optimizer": ({"optimizer": {"sgdd": {"lr": {"min": 0.01, "max": 0.1}}}}, "unknown optimizer"),
    "objective": ({"objective": "loss"}, "search.objective: unknown objective 'loss'; valid: reward, eval"),
    "eval_without_benchmarks": ({"objective": "eval"}, "search.objective=eval needs runs that evaluate"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_search_is_one_line_before_anything_runs(case, tmp_path):
    changes, message = BAD[case]
    path = _search_file(tmp_path, **changes)
    out = tmp_path / "out"
    for dry in ([], ["--dry-run"]):
        result = runner.invoke(app, ["sweep", str(path), "--output-dir", str(out), *dry])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert not out.exists()


def test_the_dry_run_prints_the_space_the_rungs_and_the_budget(tmp_path):
    result = runner.invoke(app, ["sweep", str(SMOKE), "--dry-run", "--output-dir", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["search"]
    assert [s["study"] for s in info["studies"]] == ["search_smoke/sgd/s0", "search_smoke/adamw/s0"]
    assert info["rungs"] == studies.rungs(2, 2, 6) == [2, 4] and info["max_steps"] == 6
    assert info["max_optimizer_steps"] == 2 * 4 * 6  # 2 studies x 4 trials x 6 steps
    assert info["min_optimizer_steps"] == 2 * (6 + 3 * 2)  # per study: the first trial to the end, 3 stopped at step 2
    assert info["grid_optimizer_steps"] == (7 + 9) * 6  # the log grids at 2 points per decade over the ranges
    assert not (tmp_path / "o").exists()
    text = runner.invoke(app, ["sweep", str(SMOKE), "--dry-run", "--output-dir", str(tmp_path / "o")]).stdout
    assert "rungs at optimizer steps 2, 4 of 6" in text and "at least 24 and at most 48 optimizer steps, against 96" \
        in text


def test_the_sampler_seed_repeats_the_learning_rates(tmp_path):
    """The same file asks the same learning rates; another seed asks others (TPE's startup trials are random)."""
    from rlvr_cli.sweeps import launch, search, search_spec

    def asked(path: Path, where: Path) -> list[float]:
        sweep = launch.plan(path)
        spec, max_steps = search_spec.check(sweep)
        plan = search_spec.plan_studies(sweep, spec)
        where.mkdir()
        store = studies.storage(where / studies.STORAGE_FILE)
        opened = {st.name: search.open_study(store, where, st, spec, max_steps) for st in plan}
        manifest = {"name": sweep.name, "cells": []}
        search.ask(where, plan, opened, spec, 6, manifest, [])
        return [c["axes"]["lr"] for c in manifest["cells"]]

    first, again = asked(SMOKE, tmp_path / "a"), asked(SMOKE, tmp_path / "b")
    assert first == again and len(first) == 6 and len(set(first)) == 6
    other = asked(_search_file(tmp_path, seed=1), tmp_path / "c")
    assert other != first
    # qmc (scipy's scrambled Sobol sequence through Optuna's QMCSampler): six trials asked at once, as sha asks
    # them, spread over sgd's log range 1e-3..1: they fall in at least 4 of its 6 half-decades
    one = _search_file(tmp_path, name="q", sampler="qmc", trials=6,
                       optimizer={"sgd": {"lr": {"min": 1e-3, "max": 1.0}}})
    qmc = asked(one, tmp_path / "d")
    assert len(qmc) == 6 and len({min(int((math.log10(lr) + 3) / 0.5), 5) for lr in qmc}) >= 4, qmc


# --- a trial that its pruner stops -----------------------------------------------------------------------------


def _trial_study(tmp_path: Path, best: float = 10.0, reduction_factor: int = 2,
                 rung_values: tuple[float, ...] | None = None) -> tuple[Path, str, int]:
    """A study whose three finished trials reached `best` at rung 0 (step 1) of asha(min_resource=1, eta=2) (or
    `rung_values[k]` at rung k, eta=`reduction_factor`), and one new trial asked of it: (storage file, study name,
    the new trial's number)."""
    import optuna
    from optuna.distributions import FloatDistribution

    rung_values = rung_values or (best,)
    path = tmp_path / studies.STORAGE_FILE
    study = optuna.create_study(study_name="t/sgd/s0", storage=studies.storage(path), direction="maximize")
    study.set_user_attr("search", {"pruner": "asha", "min_resource": 1, "reduction_factor": reduction_factor,
                                   "max_steps": 3, "smoothing": 1})
    lr = FloatDistribution(1e-3, 1.0, log=True)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            value=best, params={"lr": 0.01}, distributions={"lr": lr},
            intermediate_values={reduction_factor ** k: v for k, v in enumerate(rung_values)} | {3: best},
            system_attrs={studies.RUNG_KEY.format(k): v for k, v in enumerate(rung_values)}))
    return path, study.study_name, study.ask({"lr": lr}).number


def _trial_command(path: Path, name: str, number: int, out: Path) -> list[str]:
    """`rlvr train` of 3 steps on tiny-random with a dense reward, as trial `number` of study `name` in `path`,
    into `out/t`; its last element is the `trial=` override."""
    return [sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, "grpo.max_steps=3", f"output_dir={out}",
            "run_name=t", "~rewards.correctness", "~rewards.format",
            "+rewards.rlvr_cli.training.rewards.completion_length_reward=1.0",
            f"trial={{storage: '{path}', study: '{name}', number: {number}}}"]


def test_a_trial_below_its_rung_ends_pruned_with_exit_code_4(tmp_path):
    path, name, number = _trial_study(tmp_path)
    out = tmp_path / "runs"
    cmd = _trial_command(path, name, number, out)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == EXIT_CODES[PRUNED] == 4, proc.stderr[-3000:]
    summary = json.loads((out / "t" / "summary.json").read_text())
    assert summary["status"] == PRUNED and summary["weights_dir"] is None
    assert summary["pruned"]["step"] == 1 and summary["pruned"]["rung"] == 0
    assert summary["pruned"]["threshold"] == 10.0 and summary["pruned"]["objective"] < 10.0
    assert summary["reason"].startswith("pruned by asha at step 1 (rung 0): objective ")
    assert [r["step"] for r in read_metrics(out / "t" / "metrics.jsonl")] == [1]  # the metrics are kept
    # the run reported to the study; the trial stays running until the sweep tells it (rlvr_cli.sweeps.search.tell)
    import optuna

    trial = optuna.load_study(study_name=name, storage=studies.storage(path)).trials[number]
    assert list(trial.intermediate_values) == [1] and trial.state.name == "RUNNING"
    # a trial runs once: its number again is refused before the run directory
    again = runner.invoke(app, [*cmd[3:-1], "run_name=t2", f"trial={{storage: '{path}', study: '{name}', number: 0}}"])
    assert again.exit_code == 2 and "is finished already" in again.stderr and not (out / "t2").exists()


def test_a_rung_at_the_last_step_does_not_prune_a_trial_that_ran_every_step(tmp_path):
    """Issue 25: asha(min_resource=1, eta=3) over 3 steps places rung 1 at step 3, the last. The others' values
    there (10) are far above this trial's, so Optuna's pruner says prune; but the trial has paid for every step: it
    completes and keeps its weights."""
    path, name, number = _trial_study(tmp_path, reduction_factor=3, rung_values=(-1.0, 10.0))
    out = tmp_path / "runs"
    cmd = _trial_command(path, name, number, out)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "t" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["weights_dir"] is not None
    import optuna

    trial = optuna.load_study(study_name=name, storage=studies.storage(path)).trials[number]
    assert sorted(trial.intermediate_values) == [1, 2, 3]  # it reported at the rung, and was not pruned there
    assert trial.system_attrs.get(studies.RUNG_KEY.format(0)) is not None


def test_the_median_pruner_prunes_from_step_min_resource_on():
    """Issue 25: the median pruner's warm-up was min_resource - 1. Judged by Optuna itself on a real study."""
    import optuna
    from optuna.distributions import FloatDistribution

    study = optuna.create_study(direction="maximize", pruner=studies.pruner("median", 5, 3, 20))
    lr = FloatDistribution(1e-3, 1.0, log=True)
    study.add_trial(optuna.trial.create_trial(value=1.0, params={"lr": 0.1}, distributions={"lr": lr},
                                              intermediate_values={s: 1.0 for s in range(1, 21)}))
    trial = study.ask({"lr": lr})
    verdicts = {}
    for step in range(1, 7):
        trial.report(0.0, step)
        verdicts[step] = trial.should_prune()
    assert verdicts == {1: False, 2: False, 3: False, 4: False, 5: True, 6: True}


def test_a_completed_trial_is_ranked_as_a_grid_cell_and_each_study_has_its_own_sampler_seed(tmp_path):
    """Issue 25: a completed trial's objective is its mean reward over the last quarter of the steps (the grid's
    ranking), not the smoothed last steps; and two studies of one search start from different learning rates."""
    from rlvr_cli.sweeps import launch, search, search_spec

    summary = {"objective": 0.9, "reward_mean_last_quarter": 0.4}
    assert search.objective_of(summary, "reward") == 0.4
    sweep = launch.plan(SMOKE)
    spec, max_steps = search_spec.check(sweep)
    plan = search_spec.plan_studies(sweep, spec)
    store = studies.storage(tmp_path / studies.STORAGE_FILE)
    opened = {st.name: search.open_study(store, tmp_path, st, spec, max_steps, i) for i, st in enumerate(plan)}
    manifest = {"name": sweep.name, "cells": []}
    search.ask(tmp_path, plan, opened, spec, 8, manifest, [])
    by_study: dict[str, list[float]] = {}
    for c in manifest["cells"]:
        by_study.setdefault(c["axes"]["study"], []).append(c["axes"]["lr"])
    sgd, adamw = by_study.values()
    # the same uniform draws on a log scale would give the same position in each range: compare positions
    import math

    def positions(lrs: list[float], lo: float, hi: float) -> list[float]:
        return [round((math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo)), 6) for x in lrs]

    assert positions(sgd, *spec.ranges["sgd"]) != positions(adamw, *spec.ranges["adamw"])


# --- a whole search ---------------------------------------------------------------------------------------------


def test_a_search_runs_prunes_tells_and_reports(tmp_path):
    """One optimizer, 3 trials of 6 steps, asha with rungs at steps 2 and 4: at least one trial is pruned at a rung,
    every trial is told (none left running in the study), the report names the best completed trial, and the
    search spends fewer optimizer steps than the grid over the same range."""
    path = _search_file(tmp_path, optimizer={"sgd": {"lr": {"min": 1e-3, "max": 1.0}}}, trials=3)
    out = tmp_path / "sw"
    result = runner.invoke(app, ["sweep", str(path), "--output-dir", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cells = doc["cells"]
    assert len(cells) == 3 and {c["axes"]["trial"] for c in cells} == {0, 1, 2}
    statuses = [c["status"] for c in cells]
    assert PRUNED in statuses and set(statuses) <= {"completed", PRUNED}, statuses
    for cell in cells:
        summary = json.loads((out / cell["run_dir"] / "summary.json").read_text())
        steps = [r["step"] for r in read_metrics(out / cell["run_dir"] / "metrics.jsonl")]
        if cell["status"] == PRUNED:
            assert summary["pruned"]["step"] in (2, 4) and steps[-1] == summary["pruned"]["step"]
            assert summary["pruned"]["threshold"] is not None
        else:
            assert steps[-1] == 6 and summary["objective"] is not None
    [st] = doc["report"]["search"]
    values = {t["run"]: t["objective"] for t in st["trials"] if t["state"] == "complete"}
    for cell in cells:  # a completed trial is ranked as a grid cell is: its last quarter's mean reward
        if cell["status"] == "completed":
            summary = json.loads((out / cell["run_dir"] / "summary.json").read_text())
            assert values[cell["name"]] == summary["reward_mean_last_quarter"]
    assert st["states"].get("running") is None and sum(st["states"].values()) == 3
    completed = [t for t in st["trials"] if t["state"] == "complete"]
    assert st["best_objective"] == max(t["objective"] for t in completed)
    assert st["best_lr"] in [c["axes"]["lr"] for c in cells if c["status"] == "completed"]
    assert st["optimizer_steps"] < st["grid_optimizer_steps"] == 7 * 6
    completed_lrs = {c["axes"]["lr"] for c in cells if c["status"] == "completed"}
    assert {s["lr"] for b in doc["report"]["best_lr"] for s in b["lrs"]} == completed_lrs  # pruned: not counted
    for plot in ("search_objective_vs_lr.png", "search_trial_curves.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    pruned = next(c for c in cells if c["status"] == PRUNED)  # rlvr eval understands a pruned trial: no weights
    evaluated = runner.invoke(app, ["eval", str(out / pruned["run_dir"]), "--benchmarks", "gsm8k", "--limit", "1"])
    assert evaluated.exit_code == 2 and "no weights in final/ (status: pruned)" in evaluated.stderr
    report = runner.invoke(app, ["report", str(out)])
    assert "learning-rate search: best trial per study" in report.stdout and "pruned@" in report.stdout
    # --resume of a finished search asks nothing more
    again = runner.invoke(app, ["sweep", str(path), "--output-dir", str(out), "--resume", "--json"])
    kept = json.loads(again.stdout)["cells"]
    assert again.exit_code == 0
    assert [(c["name"], c["status"]) for c in kept] == [(c["name"], c["status"]) for c in cells]
    assert not any(c["ran"] for c in kept)
    # a search into a directory that holds another search is refused, naming what differs
    other = _search_file(tmp_path, optimizer={"sgd": {"lr": {"min": 1e-2, "max": 1.0}}}, trials=3)
    refused = runner.invoke(app, ["sweep", str(other), "--output-dir", str(out), "--resume"])
    assert refused.exit_code == 2 and "of another search (lr_min differ)" in refused.stderr


@pytest.mark.slow  # ~2 min: a search killed with SIGKILL mid-trial, then resumed
def test_a_killed_search_resumes_losing_no_finished_trial(tmp_path):
    path = _search_file(tmp_path, optimizer={"sgd": {"lr": {"min": 1e-3, "max": 1.0}}}, trials=3)
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "rlvr_cli.cli", "sweep", str(path), "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    finished = None
    while time.monotonic() < deadline and finished is None:  # wait for the first trial to end, the second to start
        time.sleep(0.5)
        runs = sorted((out / "runs").glob("*/summary.json")) if (out / "runs").is_dir() else []
        done = [r for r in runs if json.loads(r.read_text() or "{}").get("status") in ("completed", PRUNED)]
        if done and len(runs) >= 2:
            finished = done[0].parent
    assert finished is not None, "the first trial did not finish in time"
    stamp = (finished / "summary.json").stat().st_mtime_ns
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running trial
    proc.wait()
    result = runner.invoke(app, ["sweep", str(path), "--output-dir", str(out), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (finished / "summary.json").stat().st_mtime_ns == stamp  # the finished trial is untouched
    [st] = doc["report"]["search"]
    closed = [t for t in st["trials"] if t["closed"]]
    assert len(closed) == 1 and closed[0]["closed"] == "dead" and closed[0]["state"] == "fail"
    counted = [t for t in st["trials"] if not t["closed"]]
    assert len(counted) == 3 and all(t["state"] in ("complete", "pruned") for t in counted)  # its budget asked again


@pytest.mark.slow  # ~1 min: two trials at a time through submitit_local
def test_concurrent_trials_share_the_study_without_losing_a_report(tmp_path):
    path = _search_file(tmp_path, optimizer={"sgd": {"lr": {"min": 1e-3, "max": 1.0}}})
    out = tmp_path / "sw"
    result = runner.invoke(app, ["sweep", str(path), "--output-dir", str(out), "--launcher", "submitit_local",
                                 "--max-parallel", "2", "--json"])
    assert result.exit_code == 0, result.output
    [st] = json.loads(result.stdout)["report"]["search"]
    assert sum(st["states"].values()) == 4 and "running" not in st["states"]
    import optuna

    study = optuna.load_study(study_name=st["study"], storage=studies.storage(out / studies.STORAGE_FILE))
    for trial in study.trials:  # every step every trial ran was reported, none lost to a concurrent write
        run = Path(trial.user_attrs["run_dir"])
        steps = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
        assert sorted(trial.intermediate_values) == steps, (trial.number, steps)


@pytest.mark.slow  # ~40 s: a real search, Ctrl-C while its first trial trains
def test_ctrl_c_of_a_search_ends_its_trial_interrupted_in_one_line(tmp_path):
    """Issue 26, item 3: a Ctrl-C printed a KeyboardInterrupt traceback from rlvr_cli/sweeps/job.py before rlvr's
    line. Now it ends as a grid's does: the running trial `interrupted`, one line, exit 130."""
    path = _search_file(tmp_path, optimizer={"sgd": {"lr": {"min": 1e-3, "max": 1.0}}}, trials=2)
    out = tmp_path / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_cli.cli", "sweep", str(path), "--output-dir", str(out),
                             "grpo.max_steps=400"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # a trial has logged a step
        runs = out / "runs"
        if runs.is_dir() and any(m.read_text().strip() for m in runs.glob("*/metrics.jsonl")):
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: search interrupted"), err[-3000:]
    statuses = [json.loads(p.read_text())["status"] for p in (out / "runs").glob("*/summary.json")]
    assert statuses and set(statuses) == {"interrupted"}, statuses
