"""The promotion variant of successive halving (`search.pruner: sha`, `rlvr_cli.sweeps.promotion`): its schedule
against Li et al.'s (arXiv 1810.05934, section 3), a trial that pauses with a Trainer checkpoint and resumes to the
same steps as one that never paused (real TRL runs of tiny-random), and a whole search on real processes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY
from typer.testing import CliRunner

from rlvr_cli.cli.main import app
from rlvr_cli.core import study as studies
from rlvr_cli.core.run_dir import COMPLETED, EXIT_CODES, PAUSED, PRUNED, read_metrics
from rlvr_cli.sweeps.promotion import COMPLETE, FAIL, RUNNING, TrialView, plan_study, planned_steps

runner = CliRunner()


# --- the schedule -------------------------------------------------------------------------------------------------


def _simulate(values: dict[int, float], rungs: list[int], eta: int, max_steps: int,
              fail_before: dict[int, int] | None = None) -> tuple[int, list[list[int]], set[int]]:
    """Run `plan_study` to the end over trials whose smoothed reward is `values[number]` at every step (a trial in
    `fail_before` fails at that step). Returns (optimizer steps paid, the trials run in each round, the survivors
    that completed)."""
    fail_before = fail_before or {}
    trials = {n: TrialView(n, RUNNING) for n in values}
    paid, rounds = 0, []
    while True:
        plan = plan_study(list(trials.values()), rungs, eta)
        for cut in plan.cut:
            trials[cut.number] = TrialView(cut.number, "pruned", trials[cut.number].step, trials[cut.number].values)
        if not plan.run:
            return paid, rounds, {n for n, t in trials.items() if t.state == COMPLETE}
        rounds.append(sorted(n for n, _ in plan.run))
        for n, pause_at in plan.run:
            t, end = trials[n], pause_at or max_steps
            stop = min(end, fail_before.get(n, end + 1) - 1) if n in fail_before else end
            paid += stop - t.step
            seen = {**t.values, **{s: values[n] for s in range(t.step + 1, stop + 1)}}
            state = FAIL if stop < end else RUNNING if pause_at else COMPLETE
            trials[n] = TrialView(n, state, stop, seen)


def test_the_schedule_is_li_et_al_s_and_pays_each_step_once():
    """9 trials, eta 3, rungs at steps 2 and 6 of 18: n_i = 9, 3, 1 trials run to r_i = 2, 6, 18 (Li et al.,
    arXiv 1810.05934, Algorithm 1 with s = 0), the best survives, and each step is paid once:
    9 x 2 + 3 x (6 - 2) + 1 x (18 - 6) = 42, against 9 x 18 = 162 for the grid."""
    values = {n: n / 10 for n in range(9)}
    paid, rounds, done = _simulate(values, [2, 6], 3, 18)
    assert rounds == [list(range(9)), [6, 7, 8], [8]]
    assert done == {8}
    assert paid == planned_steps(9, [2, 6], 3, 18) == 9 * 2 + 3 * 4 + 1 * 12 == 42


def test_a_rung_where_every_trial_ties_cuts_nothing():
    """No weight changed before the rung (every advantage 0): every trial has the same value, and all go on."""
    paid, rounds, done = _simulate({n: 0.25 for n in range(4)}, [2], 2, 6)
    assert rounds == [[0, 1, 2, 3], [0, 1, 2, 3]] and done == {0, 1, 2, 3} and paid == 4 * 6


def test_ties_at_the_cut_go_on_and_a_failed_trial_ranks_last():
    """eta 2 over 4 trials keeps 2; a tie for second place keeps both; a trial that failed before the rung has no
    value there, ranks last and is never run again."""
    paid, rounds, done = _simulate({0: 0.9, 1: 0.5, 2: 0.5, 3: 0.99}, [2], 2, 6, fail_before={3: 2})
    assert rounds == [[0, 1, 2, 3], [0, 1, 2]] and done == {0, 1, 2}
    assert paid == 3 * 6 + 1  # trial 3 paid its one step


def test_a_tie_in_float32_rounding_is_a_tie():
    """Two trials with 13 of 36 right answers over the smoothing window, averaged in another order: equal values up
    to float32 rounding (measured on SmolLM2, seed 0), so both go on."""
    trials = [TrialView(0, RUNNING, 4, {4: 0.4444444378217061}), TrialView(1, RUNNING, 4, {4: 0.3611111094554265}),
              TrialView(2, RUNNING, 4, {4: 0.3611111044883728}), TrialView(3, RUNNING, 4, {4: 0.25}),
              TrialView(4, RUNNING, 4, {4: 0.2}), TrialView(5, RUNNING, 4, {4: 0.1})]
    plan = plan_study(trials, [4, 12], 3)
    assert sorted(n for n, _ in plan.run) == [0, 1, 2] and [c.number for c in plan.cut] == [3, 4, 5]


def test_the_plan_is_recomputed_from_state_so_a_resumed_sweep_repeats_nothing():
    """A study where rung 0 was decided (trial 1 cut, trial 0 paused at rung 1) and a new trial (asked after a
    closed one) has not run: only the new trial runs, to rung 0; once it has, rung 0 is decided again with it."""
    trials = [TrialView(0, RUNNING, 4, {2: 0.9, 4: 0.9}), TrialView(1, "pruned", 2, {2: 0.1}),
              TrialView(2, RUNNING)]
    plan = plan_study(trials, [2, 4], 2)
    assert plan.run == [(2, 2)] and plan.cut == []
    trials[2] = TrialView(2, RUNNING, 2, {2: 0.5})
    plan = plan_study(trials, [2, 4], 2)
    assert [c.number for c in plan.cut] == [2] and plan.cut[0].threshold == 0.9 and plan.run == [(0, None)]
    assert plan.cut[0].reason() == ("not promoted at rung 0 (step 2): objective 0.5 below 0.9, the least of the 1 "
                                    "of 3 trials that went on")
    assert not math.isinf(plan.cut[0].threshold)


# --- a trial pauses and resumes ----------------------------------------------------------------------------------


def _study(tmp_path: Path, trials: int) -> tuple[Path, str]:
    """A sha study of `trials` asked trials (4 steps, rung at 2), as rlvr sweep opens one."""
    import optuna
    from optuna.distributions import FloatDistribution

    path = tmp_path / studies.STORAGE_FILE
    study = optuna.create_study(study_name="p/adamw/s0", storage=studies.storage(path), direction="maximize")
    study.set_user_attr("search", {"pruner": "sha", "min_resource": 2, "reduction_factor": 2, "max_steps": 4,
                                   "smoothing": 2})
    for _ in range(trials):
        study.ask({"lr": FloatDistribution(1e-5, 1e-1, log=True)})
    return path, study.study_name


def _train_args(path: Path, name: str, number: int, out: Path, run: str, **trial) -> list[str]:
    """`rlvr train`'s arguments for 4 AdamW steps (a linear learning-rate schedule) on tiny-random with a dense
    reward, as trial `number` of study `name`, into `out/run`; `trial` adds `pause_at` and `resume`."""
    node = ", ".join([f"storage: '{path}'", f"study: '{name}'", f"number: {number}",
                      *(f"{k}: {str(v).lower()}" for k, v in trial.items())])
    return ["train", *TINY, "grpo.max_steps=4", "optimizer=adamw", "optimizer.lr=0.01", f"output_dir={out}",
            f"run_name={run}", "~rewards.correctness", "~rewards.format",
            "+rewards.rlvr_cli.training.rewards.completion_length_reward=1.0", f"trial={{{node}}}"]


def _train(path: Path, name: str, number: int, out: Path, run: str, **trial) -> subprocess.CompletedProcess:
    """`_train_args` run as its own process."""
    return subprocess.run([sys.executable, "-m", "rlvr_cli.cli", *_train_args(path, name, number, out, run, **trial)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.slow  # ~35 s of make test's 10 minutes; the pause/cut/resume path itself runs in the search test above
def test_a_paused_trial_resumes_to_the_very_steps_of_a_trial_that_never_paused(tmp_path):
    """The checkpoint holds what transformers' Trainer resumes (weights, optimizer, scheduler, RNG states), so a
    trial paused at step 2 and resumed to 4 logs the same rewards, losses and gradient norms as one run straight to
    4; the study sees every step reported once, and the trial stays running while it is paused."""
    import optuna

    path, name = _study(tmp_path, 2)
    out = tmp_path / "runs"
    paused = _train(path, name, 0, out, "a", pause_at=2)
    assert paused.returncode == EXIT_CODES[PAUSED] == 5, paused.stderr[-3000:]
    summary = json.loads((out / "a" / "summary.json").read_text())
    assert summary["status"] == PAUSED and summary["global_step"] == 2 and summary["weights_dir"] is None
    checkpoint = out / "a" / "checkpoint-2"
    assert summary["paused"]["checkpoint"] == str(checkpoint) and summary["paused"]["checkpoint_bytes"] > 0
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= \
        {p.name for p in checkpoint.iterdir()}
    study = optuna.load_study(study_name=name, storage=studies.storage(path))
    assert study.trials[0].state.name == "RUNNING" and sorted(study.trials[0].intermediate_values) == [1, 2]

    resumed = _train(path, name, 0, out, "a", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = _train(path, name, 1, out, "b")
    assert straight.returncode == 0, straight.stderr[-3000:]
    keys = ("step", "reward", "loss", "grad_norm", "lr")
    a, b = ([{k: r[k] for k in keys} for r in read_metrics(out / run / "metrics.jsonl")] for run in ("a", "b"))
    assert [r["step"] for r in a] == [1, 2, 3, 4] and a == b
    summary = json.loads((out / "a" / "summary.json").read_text())
    assert summary["status"] == COMPLETED and summary["global_step"] == 4 and (out / "a" / "final").is_dir()
    assert summary["reward_mean_last_quarter"] == json.loads((out / "b" / "summary.json").read_text())[
        "reward_mean_last_quarter"]  # over all four steps, not the resumed two
    study = optuna.load_study(study_name=name, storage=studies.storage(path))
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3, 4]
    assert study.trials[0].intermediate_values == study.trials[1].intermediate_values


@pytest.mark.parametrize("trial, refusal", [
    ({"resume": True}, "is completed, not paused: only a paused trial resumes"),
    ({"pause_at": 4}, "trial.pause_at=4 is not below grpo.max_steps=4"),
    ({"pause_at": 0}, "trial.pause_at must be an integer >= 1 or null"),
])
def test_a_resume_of_a_run_that_is_not_paused_and_a_pause_past_the_end_are_refused(trial, refusal, tmp_path):
    """Bad pause and resume values: one line, exit 2, nothing written."""
    path, name = _study(tmp_path, 1)
    out = tmp_path / "runs"
    (out / "a").mkdir(parents=True)
    (out / "a" / "summary.json").write_text(json.dumps({"status": COMPLETED}))
    refused = runner.invoke(app, _train_args(path, name, 0, out, "a" if trial.get("resume") else "n", **trial))
    assert refused.exit_code == 2 and refusal in refused.stderr, refused.output[-2000:]
    assert not (out / "n").exists() and json.loads((out / "a" / "summary.json").read_text()) == {"status": COMPLETED}


# --- a whole search -----------------------------------------------------------------------------------------------


def test_a_promotion_search_pauses_cuts_resumes_and_deletes_its_checkpoints(tmp_path):
    """One optimizer, 2 trials of 3 steps, a rung at step 2 keeping 1 of 2 (both on a tie): every trial pauses at
    step 2, a cut one ends pruned with the reason, the best resume to step 3 and complete; no checkpoint is left,
    their bytes are in the report, and the optimizer steps are what the schedule says, each paid once."""
    data = yaml.safe_load((REPO / "sweeps" / "search_smoke.yaml").read_text())
    data["name"] = "p"
    data["base"] = [b.replace("grpo.max_steps=6", "grpo.max_steps=3") for b in data["base"]]
    data["search"].update(optimizer={"adamw": {"lr": {"min": 1e-5, "max": 1e-1}}}, trials=2, pruner="sha",
                          min_resource=2, reduction_factor=2)
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump(data))
    out = tmp_path / "sw"
    dry = json.loads(runner.invoke(app, ["sweep", str(file), "--dry-run", "--json", "--output-dir",
                                         str(out)]).stdout)["search"]
    assert dry["rungs"] == [2] and dry["min_optimizer_steps"] == 2 * 2 + 1 and dry["max_optimizer_steps"] == 6
    result = runner.invoke(app, ["sweep", str(file), "--output-dir", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    [st] = doc["report"]["search"]
    cells = doc["cells"]
    assert len(cells) == 2 and {c["status"] for c in cells} <= {COMPLETED, PRUNED}
    completed = [c for c in cells if c["status"] == COMPLETED]
    assert completed and st["states"].get("running") is None
    for cell in cells:
        run = out / cell["run_dir"]
        summary = json.loads((run / "summary.json").read_text())
        steps = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
        assert not list(run.glob("checkpoint-*"))  # every trial is final: no checkpoint left
        assert summary["checkpoint_bytes_deleted"] > 0
        if cell["status"] == PRUNED:
            assert steps == [1, 2] and summary["pruned"]["pruner"] == "sha" and summary["pruned"]["rung"] == 0
            assert summary["reason"].startswith("not promoted at rung 0 (step 2): objective ")
        else:
            assert steps == [1, 2, 3] and summary["global_step"] == 3
    assert st["optimizer_steps"] == 2 * 2 + len(completed) * 1 == sum(c["global_step"] for c in doc["report"]["cells"])
    assert st["checkpoint_bytes"] == sum(json.loads((out / c["run_dir"] / "summary.json").read_text())[
        "checkpoint_bytes_deleted"] for c in cells)
    assert st["best_lr"] in [c["axes"]["lr"] for c in completed]
    assert "checkpoints deleted" in runner.invoke(app, ["report", str(out)]).stdout
    again = runner.invoke(app, ["sweep", str(file), "--output-dir", str(out), "--resume", "--json"])
    assert again.exit_code == 0 and not any(c["ran"] for c in json.loads(again.stdout)["cells"])
