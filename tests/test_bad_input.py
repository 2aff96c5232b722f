"""Typed config validation through the real CLI: every bad value fails with ONE line `error: ...` on stderr,
exit code 2, naming its key, before any model loads and before the run directory exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY
from typer.testing import CliRunner

from rlvr_cli.cli.main import app

runner = CliRunner()

#: case -> (arguments after `rlvr train` TINY output_dir=..., or a whole command starting with `memory`;
#: text the error must contain: the key and what it must be).
CASES = {
    "batch_abc": (["grpo.per_device_train_batch_size=abc"],
                  "grpo.per_device_train_batch_size must be an integer >= 1 (completions per step and device), "
                  "got 'abc'; e.g. grpo.per_device_train_batch_size=8"),
    "accumulation_abc": (["grpo.gradient_accumulation_steps=abc"],
                         "grpo.gradient_accumulation_steps must be an integer >= 1, got 'abc'"),
    "num_samples_abc": (["data.num_samples=abc"], "data.num_samples must be an integer >= 1, got 'abc'"),
    "momentum_abc": (["optimizer=sgd", "optimizer.momentum=abc"],
                     "optimizer.momentum must be a number >= 0, got 'abc'; e.g. optimizer.momentum=0.9"),
    "seed_abc": (["seed=abc"], "seed must be an integer >= 0 and <= 4294967295, got 'abc'; e.g. seed=0"),
    "seed_negative": (["seed=-1"], "seed must be an integer >= 0 and <= 4294967295, got -1; e.g. seed=0"),
    "batch_zero": (["grpo.per_device_train_batch_size=0"], "grpo.per_device_train_batch_size must be an integer >= 1"),
    "completion_zero": (["grpo.max_completion_length=0"], "grpo.max_completion_length must be an integer >= 1"),
    "steps_zero": (["grpo.max_steps=0"], "grpo.max_steps must be an integer >= 1 (optimizer steps), got 0"),
    "one_generation": (["grpo.num_generations=1"], "grpo.num_generations must be an integer >= 2"),
    "lr_nan": (["optimizer.lr=nan"], "optimizer.lr must be a finite number > 0, got nan"),
    "lr_inf": (["optimizer.lr=inf"], "optimizer.lr must be a finite number > 0, got inf"),
    "lr_zero": (["optimizer.lr=0"], "optimizer.lr must be a finite number > 0, got 0"),
    "lr_abc": (["optimizer.lr=abc"], "optimizer.lr must be a finite number > 0, got 'abc'; e.g. optimizer.lr=0.01"),
    "tolerance_nan": (["sparsity.tolerance=nan"], "sparsity.tolerance must be a finite number >= 0"),
    "tolerance_negative": (["sparsity.tolerance=-1"], "sparsity.tolerance must be a finite number >= 0"),
    "every_n_negative": (["sparsity.every_n_steps=-1"],
                         "sparsity.every_n_steps must be an integer >= 0 (0: the last step only), got -1; "
                         "sparsity=null turns it off"),
    "max_copy_zero": (["sparsity.max_copy_gb=0"], "sparsity.max_copy_gb must be a number > 0 or null (no limit)"),
    "eval_extract": (["eval.extract=last"], "eval.extract must be one of boxed, any (boxed: only a closed "),
    "precision": (["precision=fp8"], "precision must be one of auto, fp32, bf16-mixed, fp16-mixed, bf16-true, got "
                                     "'fp8'"),
    "dtype": (["model.dtype=bfloat16"], "model.dtype is now the top-level precision: precision=fp32"),
    "mixed_precision": (["distributed.mixed_precision=bf16"], "distributed.mixed_precision is now the top-level "
                                                               "precision"),
    "rank_zero": (["adapter=lora", "adapter.r=0"], "adapter.r (adapter rank) must be an integer >= 1, got 0"),
    "rank_abc": (["adapter=lora", "adapter.r=abc"], "adapter.r (adapter rank) must be an integer >= 1, got 'abc'"),
    # PEFT methods (conf/adapter/): an unknown one lists the valid ones; a knob the method does not have is refused
    "unknown_adapter": (["adapter=lorax"], "unknown adapter 'lorax'; valid options: adalora, dora, full, ia3, "
                                           "ln_tuning, lora, lorafa, loraplus, milora, miss, pissa, rslora, vera"),
    "memory_unknown_adapter": (["memory", "tiny-random", "--adapter", "lorax"],
                               "unknown adapter 'lorax'; valid adapters: adalora, dora, full, ia3, ln_tuning, lora"),
    "rank_zero_pissa": (["adapter=pissa", "adapter.r=0"], "adapter.r (adapter rank) must be an integer >= 1, got 0"),
    "memory_rank_zero": (["memory", "tiny-random", "--adapter", "miss", "--r", "0"],
                         "--r (adapter rank) must be an integer >= 1, got 0"),
    "rank_for_ia3": (["adapter=ia3", "adapter.r=8"],
                     "adapter=ia3 has no rank: peft.IA3Config takes none, got adapter.r=8; drop adapter.r"),
    "rank_for_ln_tuning": (["adapter=ln_tuning", "adapter.r=8"], "adapter=ln_tuning has no rank: peft.LNTuningConfig"),
    "rank_for_full": (["adapter=full", "adapter.r=8"], "adapter=full has no rank: every weight trains"),
    "memory_rank_for_ia3": (["memory", "tiny-random", "--adapter", "ia3", "--r", "8"],
                            "adapter=ia3 has no rank: peft.IA3Config takes none, got adapter.r=8; drop adapter.r "
                            "(rlvr memory: --r)"),
    "alpha_for_vera": (["adapter=vera", "adapter.alpha=32"], "adapter=vera has no scale: peft.VeraConfig takes none"),
    "alpha_for_miss": (["adapter=miss", "adapter.alpha=32"], "adapter=miss has no scale: peft.MissConfig takes none"),
    "dropout_for_ia3": (["adapter=ia3", "+adapter.dropout=0.1"], "adapter=ia3 has no dropout"),
    "pissa_with_kl": (["adapter=pissa", "grpo.beta=0.04"], "adapter=pissa with grpo.beta=0.04: TRL's KL reference"),
    "milora_sharded": (["adapter=milora", "distributed=zero3", "distributed.num_processes=2"],
                       "adapter=milora trains against a residual base and is saved converted"),
    # AdaLoRA (arXiv 2303.10512): a budget schedule that cannot prune within grpo.max_steps (TINY: 2 steps)
    "adalora_no_budget_phase": (["adapter=adalora", "adapter.tinit=1", "adapter.tfinal=1"],
                                "tinit + tfinal >= total_step leaves no step to prune in"),
    "adalora_total_step": (["adapter=adalora", "adapter.total_step=5"],
                           "adapter.total_step=5 is more than grpo.max_steps=2"),
    "adalora_target_r": (["adapter=adalora", "adapter.r=4"],
                         "adapter.target_r=8 must be below the initial rank init_r=4 (adapter.r)"),
    "adalora_last_step_unmasked": (["adapter=adalora", "grpo.max_steps=4", "adapter.deltaT=2"],
                                   "the last step (index 3) re-applies no mask"),
    "adalora_warmup_to_the_end": (["adapter=adalora", "adapter.tinit=1"],
                                  "the warm-up lasts to the last step (index 1), so nothing is pruned"),
    "adalora_one_step": (["adapter=adalora", "grpo.max_steps=1"], "adapter=adalora needs grpo.max_steps >= 2"),
    "adalora_schedule_missing": (["adapter=adalora", "~adapter.tinit"],
                                 "adapter=adalora builds a peft.AdaLoraConfig but sets no adapter.tinit"),
    "adalora_delta_zero": (["adapter=adalora", "adapter.deltaT=0"],
                           "adapter.deltaT must be an integer >= 1 (steps between AdaLoRA's budget allocations)"),
    "adalora_beta": (["adapter=adalora", "adapter.beta1=1"], "adapter.beta1 must be a number > 0 and < 1"),
    "max_operand_abc": (["data.max_operand=abc"], "data.max_operand must be an integer >= 1"),
    "eval_k_zero": (["eval.k=0"], "eval.k must be an integer >= 1 (samples per problem), got 0"),
    "logger_mode": (["logger=wandb", "logger.mode=sideways"],
                    "logger.mode must be one of auto, online, offline, disabled, got 'sideways'"),
    "reward_weight": (["rewards.format=abc"], "rewards.format must be a number (its weight), got 'abc'"),
    "nested_reward_weight": (["+rewards.a.b.c=x"], "rewards.a.b.c must be a number (its weight), got 'x'"),
    "binary_data_file": (["data=jsonl", "data.path={binary}"], "{binary}: not a UTF-8 text file"),
    "memory_negative_count": (["memory", "-5"], "parameter count must be a whole number >= 1 and <= 1e15, got '-5'"),
    "vllm_share": (["generation=vllm_colocate", "generation.vllm_gpu_memory_utilization=1.5"],
                   "generation.vllm_gpu_memory_utilization must be a number > 0 and <= 1 (share of each GPU vLLM "
                   "reserves), got 1.5"),
    "vllm_port": (["generation=vllm_server", "generation.vllm_server_port=0"],
                  "generation.vllm_server_port must be an integer >= 1 and <= 65535, got 0"),
    # distributed=: what cannot do what it says on this machine or in this config, before anything starts
    "fsdp_on_cpu": (["distributed=fsdp", "distributed.num_processes=2"], "distributed=fsdp needs CUDA GPUs"),
    "processes_null_on_cpu": (["distributed=ddp"], "distributed.num_processes=null means one process per visible GPU"),
    "machine_rank": (["distributed=ddp", "distributed.num_processes=2", "distributed.machine_rank=1"],
                     "distributed.machine_rank=1 must be below distributed.num_machines=1"),
    "no_rendezvous_host": (["distributed=ddp", "distributed.num_processes=2", "distributed.num_machines=2",
                            "run_name=two-machines"], "needs the rendezvous host: distributed.main_process_ip"),
    "machines_without_run_name": (["distributed=ddp", "distributed.num_processes=2", "distributed.num_machines=2",
                                   "distributed.main_process_ip=node0"],
                                  "distributed.num_machines=2: give the run a name, the same on every machine"),
    "zero3_not_gathered": (["distributed=zero3", "distributed.num_processes=2",
                            "~distributed.deepspeed.zero_optimization.stage3_gather_16bit_weights_on_model_save"],
                           "stage3_gather_16bit_weights_on_model_save=true"),
    "offload_params_zero2": (["distributed=zero2", "distributed.num_processes=2", "+distributed.offload_params=true"],
                             "distributed.offload_params=true needs ZeRO stage 3"),
    "grpo_and_distributed": (["distributed=ddp", "distributed.num_processes=2", "+grpo.deepspeed=ds.json"],
                             "grpo.deepspeed and distributed=ddp both set"),
    "processes_zero": (["distributed=ddp", "distributed.num_processes=0"],
                       "distributed.num_processes must be an integer >= 1"),
    "memory_vllm_share": (["memory", "1e9", "--gpu-memory", "80GB", "--vllm-gpu-memory-utilization", "1.2"],
                          "--vllm-gpu-memory-utilization must be in (0, 1)"),
    # optimizer factories (LoRA+, LoRA-FA, Muon): what they cannot do, before any model loads
    "loraplus_ratio_zero": (["adapter=loraplus", "adapter.loraplus_lr_ratio=0"],
                            "adapter.loraplus_lr_ratio must be a number > 0 (LoRA+: B's learning rate over A's)"),
    "lorafa_not_adamw": (["adapter=lorafa", "optimizer=sgd"],
                         "adapter=lorafa trains with PEFT's LoRA-FA optimizer, an AdamW: use optimizer=adamw"),
    "muon_vectors_only": (["optimizer=muon", "adapter=vera"],
                          "optimizer=muon: adapter=vera trains no 2-D matrix with both dimensions > 1 for Muon"),
    "muon_rank_one": (["optimizer=muon", "adapter=lora", "adapter.r=1"],
                      "optimizer=muon: adapter=lora trains no 2-D matrix"),
    "muon_zero": (["optimizer=muon", "distributed=zero2", "distributed.num_processes=2"],
                  "optimizer=muon cannot run under DeepSpeed ZeRO"),
    "muon_adjust_lr": (["optimizer=muon", "optimizer.adjust_lr_fn=sqrt"],
                       "optimizer.adjust_lr_fn must be one of original, match_rms_adamw or null, got 'sqrt'"),
    # the adapter on the model's shapes, before weights load (issue 19, item 3); tiny-random's k_proj is 32 x 64
    "pissa_rank_above_a_weight": (["adapter=pissa", "adapter.r=33"],
                                  "adapter=pissa adapter.r=33 asks for 33 singular components of "),
    "milora_rank_above_a_weight": (["adapter=milora", "adapter.r=33"],
                                   "whose weight is 32 x 64 (at most 32); use adapter.r <= 32"),
    "no_target_module": (["adapter=lora", "adapter.target_modules=[no_such_proj]"],
                         "adapter=lora cannot be built on tiny-random: "),
    # a library message wrapped over lines stays whole (issue 19, item 8: it stopped at "because it allows")
    # refused by rlvr's allowlist (issue 26) before Hydra's own blocklist would be reached
    "target_blocklisted": (["optimizer._target_=os.system"], "optimizer._target_='os.system': not under the allowed "
                                                             "modules"),
    # a reward by import path is a Python function that takes the completions (issue 19, item 6)
    "reward_builtin": (["+rewards.os.system=1.0"], "reward 'os.system' is a builtin, not a Python function; a "
                                                   "reward is def f(completions, **kwargs) -> list[float]"),
    "reward_print": (["+rewards.builtins.print=1.0"], "reward 'builtins.print' is a builtin, not a Python function"),
    "reward_other_contract": (["+rewards.subprocess.getoutput=1.0"], "reward 'subprocess.getoutput' does not take "
                                                                     "the completions (its parameters: cmd, "),
    "reward_class": (["+rewards.collections.OrderedDict=1.0"], "reward 'collections.OrderedDict' is a class, not"),
    # a module attribute: what it is and TRL's contract (it was Hydra's "Located non-callable of type 'float'")
    "reward_not_callable": (["+rewards.math.pi=1.0"], "reward 'math.pi' is a float, not a Python function; a reward "
                                                      "is def f(completions, **kwargs)"),
    # a TRL field that another setting owns, set under grpo (issue 19, item 7)
    "grpo_use_vllm": (["+grpo.use_vllm=true"], "grpo.use_vllm is set through generation=vllm_colocate or "
                                               "generation=vllm_server, whose checks a grpo field would skip"),
    "grpo_vllm_field": (["+grpo.vllm_mode=server"], "grpo.vllm_mode is set through generation=vllm_*"),
    "grpo_bf16": (["+grpo.bf16=true"], "grpo.bf16 is set through precision=bf16-mixed or precision=bf16-true"),
    # a run name is one directory inside output_dir (issue 19, item 5)
    "run_name_up": (["run_name=../escaped"], "run_name must be one directory name (no '/', not '.' or '..'), got "
                                             "'../escaped'; e.g. run_name=sgd-lr0.1"),
    "run_name_absolute": (["run_name={binary}.d"], "run_name must be one directory name (no '/', not '.' or '..')"),
    "run_name_dots": (["run_name=.."], "run_name must be one directory name (no '/', not '.' or '..'), got '..'"),
    "memory_lorafa_sgd": (["memory", "tiny-random", "--adapter", "lorafa", "--optimizer", "sgd"],
                          "--adapter lorafa trains with PEFT's LoRA-FA optimizer, an AdamW: use --optimizer adamw"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_value_is_one_line_exit_2_naming_the_key(case, tmp_path):
    binary = tmp_path / "weights.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)  # not UTF-8: 0x80 is no start byte
    args, message = ([a.format(binary=binary) for a in part] if isinstance(part, list) else
                     part.format(binary=binary) for part in CASES[case])
    argv = args if args[0] == "memory" else ["train", *TINY, f"output_dir={tmp_path / 'runs'}", *args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()  # checked before the run directory, hence before any model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.jsonl"]  # nor anywhere else


def test_sweep_dry_run_refuses_a_bad_seed_in_every_cell(tmp_path):
    result = runner.invoke(app, ["sweep", str(REPO / "sweeps" / "smoke.yaml"), "seed=-1", "--dry-run",
                                 "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cell ") and result.stderr.count("\n") == 1, result.stderr
    assert "seed must be an integer >= 0" in result.stderr and "got -1; e.g. seed=0" in result.stderr


def test_a_reward_module_that_prints_on_import_keeps_stdout_clean(tmp_path):
    """`this` prints the Zen of Python when imported: under --json that went into the JSON document's stdout."""
    result = runner.invoke(app, ["train", *TINY, f"output_dir={tmp_path / 'runs'}", "+rewards.this.s=1.0", "--json"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert "Beautiful is better than ugly." in result.stderr
    assert result.stderr.splitlines()[-1] == ("error: reward 'this.s' is a str, not a Python function; a reward is "
                                              "def f(completions, **kwargs) -> list[float] (TRL's reward-function "
                                              "contract)")


def test_a_sweep_cell_whose_name_would_leave_the_sweep_is_refused(tmp_path):
    sweep = tmp_path / "escape.yaml"
    sweep.write_text("name: escape\nbase: [model=tiny-random, logger=none]\naxes:\n  overrides: {data.path: "
                     "[../up.jsonl]}\n")
    result = runner.invoke(app, ["sweep", str(sweep), "--dry-run", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "a cell's name must be one directory name" in result.stderr
    assert "got 'path../up.jsonl'" in result.stderr and not (tmp_path / "out").exists()


def test_config_show_refuses_a_value_of_the_wrong_type():
    result = runner.invoke(app, ["config", "show", "grpo.max_steps=abc"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: grpo.max_steps must be an integer >= 1")


def test_memory_still_takes_options_after_the_model(tmp_path: Path):
    result = runner.invoke(app, ["memory", "1e6", "--optimizer", "sgd", "--json"])
    assert result.exit_code == 0, result.output
    assert '"n_params": 1000000' in result.stdout


def test_a_hub_id_with_the_hub_unreachable_is_refused_at_once(monkeypatch):
    """Issue 19, item 8: `rlvr memory abc` spent about 25 s in huggingface_hub's retries before refusing. With the
    hub unreachable (this machine, CI) the id is looked up in the local cache only: one line, no retry."""
    from rlvr_cli.core import hub

    if hub.unreachable() is None:
        pytest.skip("the hub is reachable from here: a hub id is then asked of the hub as usual")
    result = runner.invoke(app, ["memory", "no-such-org/no-such-model"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("error: cannot read model 'no-such-org/no-such-model'")
    assert "not in the hub cache, and the hub https://huggingface.co cannot be reached" in lines[0]
    assert "Retrying in" not in result.output


def test_a_hub_dataset_with_the_hub_unreachable_is_refused_from_the_cache_alone():
    """Issue 28, item 4: a hub dataset failed after datasets' retries (27 s here) where a hub model fails at once;
    both now read their caches only while the hub cannot be asked."""
    from rlvr_cli.core import hub

    if hub.unreachable() is None:
        pytest.skip("the hub is reachable from here: the dataset is then asked of the hub as usual")
    result = runner.invoke(app, ["train", "model=tiny-random", "logger=none", "data=hub",
                                 "data.hub.id=no-such-org/no-such-dataset", "data.hub.split=train"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: cannot load dataset 'no-such-org/no-such-dataset': not in the datasets cache, and the hub "
        f"{hub.unreachable()}; for local JSONL files set $RLVR_DATA_DIR (make does: ../shared/data) or the data "
        "directory")


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a new Python process with `env` added (huggingface_hub reads its variables when imported)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_hf_hub_offline_refuses_an_uncached_model_naming_it():
    done = _python("from rlvr_cli.cli.main import run; run(['memory', 'no-such-org/no-such-model'])",
                   HF_HUB_OFFLINE="1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: cannot read model 'no-such-org/no-such-model': not a local model directory with a valid config.json, "
        "and not in the hub cache, which is all HF_HUB_OFFLINE=1 lets rlvr read; unset HF_HUB_OFFLINE to download "
        "it, or download it first (hf download no-such-org/no-such-model)"]


def test_the_hubs_reachability_follows_huggingface_hubs_client_settings():
    """The endpoint (`HF_ENDPOINT`) and the proxy (`HTTP_PROXY`) of huggingface_hub's own client decide, not a raw TCP
    connection: an endpoint whose name does not resolve here is reachable through a proxy that answers (a local
    HTTP server standing in for it), and unreachable without it."""
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = "from rlvr_cli.core import hub; print(hub.unreachable())"
        via_proxy = _python(code, HF_ENDPOINT="http://hub.rlvr-test.invalid", NO_PROXY="",
                            HTTP_PROXY=f"http://127.0.0.1:{server.server_port}")
        assert via_proxy.stdout.strip() == "None", via_proxy.stderr
        without = _python(code, HF_ENDPOINT="http://hub.rlvr-test.invalid", HTTP_PROXY="", http_proxy="",
                          ALL_PROXY="", all_proxy="")
        assert without.stdout.startswith("http://hub.rlvr-test.invalid cannot be reached: "), without.stderr
        assert _python(code, HF_HUB_OFFLINE="1").stdout.strip() == "HF_HUB_OFFLINE is set"
    finally:
        server.shutdown()


@pytest.mark.parametrize("bad", ["optimizer.lr=-1", "grpo.max_steps=0", "run_name=../x", "seed=abc"])
def test_a_bad_value_is_refused_before_torch_is_imported(bad):
    """Issue 20, item 5: a refusal of `rlvr train` takes a fraction of a second, not torch's 2 s import."""
    import subprocess
    import sys

    code = (f"import sys\nfrom rlvr_cli.cli.main import run\ntry:\n    run(['train', {bad!r}])\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_training_on_damaged_weights_is_refused_before_the_run_directory(damage, tmp_path):
    """Issue 19 (docs/run-directory.md, Faults, walked): a model directory to train with a truncated or garbage
    model.safetensors was a `failed` run (exit 1) after the run directory existed; its header is read before
    anything is created."""
    from conftest import damaged_model

    model, weights = damaged_model(tmp_path, damage)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["train", *TINY, f"model.name_or_path={model}", f"output_dir={out}"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: cannot read the weights of '{model}': a .safetensors file there is "
                                    f"damaged ({weights}: truncated") and result.stderr.count("\n") == 1
    assert not out.exists()


def test_a_cache_that_is_a_file_is_named_by_every_command(tmp_path):
    """Issue 19, item 8, through the commands: `rlvr memory tiny-random` with RLVR_CACHE a file names RLVR_CACHE
    (a message about the hub once hid it)."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache-file"
    cache.write_text("not a directory")
    proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "memory", "tiny-random"], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ, "RLVR_CACHE": str(cache)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: the model cache {cache} (RLVR_CACHE) cannot hold 'tiny-random-")


@pytest.mark.parametrize("path,what", [("math.pi", " is a float, not a Python function"),
                                       ("nosuchmodule.f", ": cannot import it: No module named 'nosuchmodule'")])
def test_a_reward_path_that_is_no_function_is_one_line_on_the_real_stderr(path, what, tmp_path):
    """Issue 19 (docs/run-directory.md, Faults, walked): Hydra's lookup logged its own error line before rlvr's
    refusal; the test runs the real process, whose stderr holds the log line that CliRunner does not capture."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "rlvr_cli.cli", "train", *TINY, f"+rewards.{path}=1.0",
                           f"output_dir={tmp_path}"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: reward '{path}'{what}"), proc.stderr
