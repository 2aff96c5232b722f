"""The `generation=` group without a GPU: every file builds a real TRL `GRPOConfig` (and the server file real
`trl vllm-serve` arguments), bad settings are refused in one line before vLLM is even looked for, a vLLM choice on
a machine without CUDA is refused by `rlvr train` (and by `rlvr eval` where no vLLM that can run here is installed)
in one line before any model loads, the server process is started, waited for and stopped (a real HTTP server
stands in for vLLM here; tests/test_vllm.py runs vLLM's own), and `rlvr memory` counts a colocated engine's share of
the GPU."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY
from omegaconf import OmegaConf
from trl import GRPOConfig

from rlvr_cli.analysis.memory import GB, estimate
from rlvr_cli.analysis.planner import Plan
from rlvr_cli.core.compose import compose, compose_run, group_options, validate
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.modes import TRL_VLLM_DEFAULTS
from rlvr_cli.evaluation.vllm import unavailable
from rlvr_cli.training.generation import (
    ServerError,
    check_generation,
    check_server_address,
    grpo_fields,
    serve,
    server_args,
    server_command,
    server_gpus,
    visible_gpus,
    vllm_server,
)

REPO = Path(__file__).resolve().parents[1]
OPTIONS = group_options("generation")
#: Why vLLM cannot run here (None on a CUDA machine with vLLM): the refusal tests need it to be missing.
MISSING = unavailable("generation=vllm_colocate", "generation=hf")
#: Why `rlvr eval --backend vllm` cannot run here (None with vLLM's CPU build, or vLLM and a CUDA GPU).
EVAL_MISSING = unavailable("--backend vllm", "--backend hf", training=False)


def _gen(*overrides: str):
    return compose_run(list(overrides)).generation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the files, against TRL's own classes


@pytest.mark.parametrize("option", OPTIONS)
def test_every_generation_file_builds_a_real_grpo_config(option, tmp_path):
    cfg = compose([f"generation={option}"])
    validate(cfg)
    fields = grpo_fields(compose_run([f"generation={option}"]).generation)
    written = OmegaConf.to_container(cfg.generation)
    assert set(fields) == (set(written) - {"name", "server"}) | set(TRL_VLLM_DEFAULTS)  # the typed ones: TRL's
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **fields)
    for key, value in fields.items():  # every field reached TRL under its own name
        assert getattr(args, key) == value, key
    assert args.use_vllm == (option != "hf")
    if args.use_vllm:
        assert args.vllm_mode == option.removeprefix("vllm_")


def test_a_misspelled_generation_field_fails_in_grpo_config(tmp_path):
    fields = grpo_fields(_gen("generation=vllm_colocate", "+generation.vllm_gpu_memory_utilisation=0.5"))
    with pytest.raises(TypeError, match="vllm_gpu_memory_utilisation"):
        GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **fields)


def test_the_server_file_builds_real_trl_vllm_serve_arguments(tmp_path):
    gen = _gen("generation=vllm_server", "generation.server.tensor_parallel_size=2",
               "generation.server.gpu_memory_utilization=0.8", "generation.vllm_server_port=8123")
    server = gen.server.script_arguments()
    assert server["tensor_parallel_size"] == 2 and server["gpu_memory_utilization"] == 0.8
    args = server_args(gen, str(tmp_path))
    for key, value in server.items():
        assert getattr(args, key) == value, key
    assert (args.model, args.host, args.port) == (str(tmp_path), gen.vllm_server_host, gen.vllm_server_port)

    argv, env = server_command(gen, str(tmp_path), [6, 7], environ={"PATH": "/bin"})
    assert argv[:5] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(tmp_path)]
    flags = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert flags["--port"] == "8123" and flags["--host"] == gen.vllm_server_host
    assert flags["--tensor-parallel-size"] == "2" and flags["--gpu-memory-utilization"] == "0.8"
    assert "--weight-transfer-config" in argv  # what TRL's trainer needs to push weights into the server
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "6,7", "VLLM_SERVER_DEV_MODE": "1"}


def test_an_embedded_model_name_reaches_the_server_as_its_directory():
    from rlvr_cli.models.loading import model_path

    argv, _ = server_command(_gen("generation=vllm_server"), "tiny-random", [1])
    assert argv[4] == model_path("tiny-random") and Path(argv[4]).is_dir()


# ------------------------------------------------------------------ refusals that need no GPU

#: overrides of the generation group -> text of the one-line refusal (checked before vLLM is looked for).
BAD = {
    "tp_not_dividing": (["generation=vllm_colocate", "generation.vllm_tensor_parallel_size=3"],
                        "generation.vllm_tensor_parallel_size=3 must divide the 4 training process(es)"),
    "share_above_one": (["generation=vllm_colocate", "generation.vllm_gpu_memory_utilization=1.5"],
                        "generation.vllm_gpu_memory_utilization must be a number > 0 and <= 1"),
    "share_zero": (["generation=vllm_colocate", "generation.vllm_gpu_memory_utilization=0"],
                   "generation.vllm_gpu_memory_utilization must be a number > 0 and <= 1"),
    "tp_zero": (["generation=vllm_colocate", "generation.vllm_tensor_parallel_size=0"],
                "generation.vllm_tensor_parallel_size must be an integer >= 1"),
    "mode_contradicts": (["generation=vllm_colocate", "generation.vllm_mode=server"],
                         "generation=vllm_colocate needs generation.use_vllm=true and generation.vllm_mode=colocate"),
    "mode_unknown": (["generation=vllm_server", "generation.vllm_mode=remote"],
                     "generation.vllm_mode must be one of colocate, server, got 'remote'"),
    "hf_with_vllm": (["+generation.use_vllm=true"], "generation=hf samples with transformers' generate"),
    "name_unknown": (["generation.name=tgi"], "generation.name must be one of hf, vllm_colocate, vllm_server"),
    "port_range": (["generation=vllm_server", "generation.vllm_server_port=70000"],
                   "generation.vllm_server_port must be an integer >= 1 and <= 65535, got 70000"),
    "port_abc": (["generation=vllm_server", "generation.vllm_server_port=abc"],
                 "generation.vllm_server_port must be an integer >= 1 and <= 65535, got 'abc'"),
    "timeout_zero": (["generation=vllm_server", "generation.vllm_server_timeout=0"],
                     "generation.vllm_server_timeout must be a number > 0"),
    "server_share": (["generation=vllm_server", "generation.server.gpu_memory_utilization=2"],
                     "generation.server.gpu_memory_utilization must be a number > 0 and <= 1"),
    "server_field": (["generation=vllm_server", "+generation.server.tensor_paralel_size=2"],
                     "generation.server: ScriptArguments.__init__() got an unexpected keyword argument "
                     "'tensor_paralel_size'"),
    "server_gpu_count": (["generation=vllm_server", "generation.server.gpus=[1,2]"],
                         "generation.server.gpus=[1, 2] must be 1 distinct GPU ids >= 0"),
    "server_gpu_negative": (["generation=vllm_server", "generation.server.gpus=[-1]"],
                            "generation.server.gpus=[-1] must be 1 distinct GPU ids >= 0"),
    "base_url_and_start": (["generation=vllm_server", "+generation.vllm_server_base_url=http://h:8000"],
                           "generation.vllm_server_base_url='http://h:8000' names a running server"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_settings_are_refused_in_one_line_before_vllm_is_looked_for(case):
    overrides, message = BAD[case]
    with pytest.raises(BadInput) as e:
        check_generation(_gen(*overrides), num_processes=4)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_good_settings_pass_the_checks_that_need_no_gpu():
    from rlvr_cli.training.generation import check_settings

    check_generation(_gen(), num_processes=3)  # hf: nothing to check
    check_settings(_gen("generation=vllm_colocate", "generation.vllm_tensor_parallel_size=2"), num_processes=4)
    check_settings(_gen("generation=vllm_server", "generation.server.gpus=[3]"), num_processes=3)
    check_settings(_gen("generation=vllm_server", "generation.server.start=false",
                        "+generation.vllm_server_base_url=http://h:8000"), num_processes=3)


def test_a_users_generation_file_that_extends_a_vllm_one_is_a_vllm_backend(own_conf):
    """A backend's traits are its composed file's, those of a file it extends (`defaults:`) included: a user's file
    over vllm_colocate passes the colocate checks, and an override that contradicts the inherited trait is refused."""
    from rlvr_cli.training.generation import check_settings

    (own_conf / "generation" / "my_vllm.yaml").write_text(
        "defaults:\n  - vllm_colocate\n  - _self_\n\nname: my_vllm\nvllm_gpu_memory_utilization: 0.5\n")
    check_settings(_gen("generation=my_vllm"), num_processes=1)
    with pytest.raises(BadInput, match="generation=my_vllm needs generation.use_vllm=true"):
        check_settings(_gen("generation=my_vllm", "generation.use_vllm=false"), num_processes=1)


@pytest.mark.skipif(MISSING is None, reason="vLLM and a CUDA GPU are here")
@pytest.mark.parametrize("option", ["vllm_colocate", "vllm_server"])
def test_a_vllm_choice_without_vllm_or_cuda_is_refused_naming_the_fix(option):
    with pytest.raises(BadInput) as e:
        check_generation(_gen(f"generation={option}"), num_processes=1)
    assert str(e.value) == unavailable(f"generation={option}", "generation=hf")
    assert str(e.value).startswith(f"generation={option} needs ") and str(e.value).endswith("or use generation=hf")


# ------------------------------------------------------------------ the real CLI: train and eval refuse alike


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlvr_cli.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=os.environ.copy(), timeout=300)


@pytest.mark.skipif(MISSING is None, reason="vLLM and a CUDA GPU are here")
def test_train_refuses_vllm_in_one_line_before_any_model_loads(tmp_path):
    """Without CUDA, with or without vLLM's CPU build installed (TRL's weight sync needs CUDA either way)."""
    runs = tmp_path / "runs"
    train = _cli("train", *TINY, "generation=vllm_colocate", f"output_dir={runs}")  # TINY: model=tiny-random
    assert train.returncode == 2, train.stderr
    assert train.stderr == f"error: {unavailable('generation=vllm_colocate', 'generation=hf')}\n"
    assert not runs.exists()  # refused before the run directory, hence before the model


@pytest.mark.skipif(EVAL_MISSING is None, reason="a vLLM that can evaluate here is installed")
def test_eval_refuses_vllm_in_one_line_where_it_cannot_run(tmp_path):
    evals = tmp_path / "evals"
    evaluated = _cli("eval", "tiny-random", "--backend", "vllm", "--output-dir", str(evals))
    assert evaluated.returncode == 2, evaluated.stderr
    assert evaluated.stderr == f"error: {EVAL_MISSING}\n"
    assert evaluated.stderr.startswith("error: --backend vllm needs ") and "--backend hf" in evaluated.stderr
    assert not evals.exists()


@pytest.mark.skipif(MISSING is None, reason="vLLM and a CUDA GPU are here")
def test_train_refuses_a_vllm_server_without_vllm_before_the_run_directory(tmp_path):
    from typer.testing import CliRunner

    from rlvr_cli.cli.main import app

    result = CliRunner().invoke(app, ["train", *TINY, "generation=vllm_server", f"output_dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {unavailable('generation=vllm_server', 'generation=hf')}\n"
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ the server's GPUs and address


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus(4, {}) == [0, 1, 2, 3]
    assert visible_gpus(2, {"CUDA_VISIBLE_DEVICES": "4,6"}) == [4, 6]
    assert visible_gpus(2, {"CUDA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d"}) is None


def test_the_server_takes_the_gpus_after_the_training_processes():
    gen = _gen("generation=vllm_server", "generation.server.tensor_parallel_size=2")
    visible = [0, 1, 2, 3, 4, 5, 6, 7]
    assert server_gpus(gen, local_processes=6, visible=visible) == visible[6:]
    assert server_gpus(gen, local_processes=2, visible=[4, 5, 6, 7]) == [6, 7]  # CUDA_VISIBLE_DEVICES=4,5,6,7
    with pytest.raises(BadInput, match=r"needs 2 GPU\(s\) of its own beside the 7 training process\(es\)"):
        server_gpus(gen, local_processes=7, visible=visible)


def test_explicit_server_gpus_must_avoid_the_training_ones_and_be_visible():
    gen = _gen("generation=vllm_server", "generation.server.gpus=[1]")
    assert server_gpus(gen, local_processes=1, visible=[0, 1]) == [1]
    with pytest.raises(BadInput, match=r"overlaps the GPUs of the training processes \(\[0, 1\]"):
        server_gpus(gen, local_processes=2, visible=[0, 1, 2])
    with pytest.raises(BadInput, match="names GPUs this process cannot see"):
        server_gpus(gen, local_processes=1, visible=[4, 5])
    assert server_gpus(gen, local_processes=1, visible=None) == [1]  # UUIDs: the explicit list is taken as it is
    with pytest.raises(BadInput, match="by UUID"):
        server_gpus(_gen("generation=vllm_server"), local_processes=1, visible=None)


def test_a_server_address_in_use_or_not_local_is_refused():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BadInput, match=f"generation.vllm_server_port={port} is taken on 127.0.0.1"):
            check_server_address(_gen("generation=vllm_server", f"generation.vllm_server_port={port}"))
    check_server_address(_gen("generation=vllm_server", f"generation.vllm_server_port={_free_port()}"))
    with pytest.raises(BadInput, match="'192.0.2.1' is not an address of this machine"):  # TEST-NET-1
        check_server_address(_gen("generation=vllm_server", "generation.vllm_server_host=192.0.2.1"))
    with pytest.raises(BadInput, match="'no-such-host.invalid' does not resolve"):
        check_server_address(_gen("generation=vllm_server", "generation.vllm_server_host=no-such-host.invalid"))


# ------------------------------------------------------------------ starting, waiting for and stopping a server


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_serve_waits_for_health_then_stops_the_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "health").write_text("ok")  # python -m http.server answers GET /health with 200
    port = _free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    with serve(argv, os.environ, f"http://127.0.0.1:{port}/health", log_path=tmp_path / "server.log",
               timeout_s=60, poll_s=0.2) as proc:
        assert proc.poll() is None
        with pytest.raises(BadInput, match="is taken"):  # what a second run on the same port is told
            check_server_address(_gen("generation=vllm_server", f"generation.vllm_server_port={port}"))
    assert proc.poll() is not None and _gone(proc.pid)
    check_server_address(_gen("generation=vllm_server", f"generation.vllm_server_port={port}"))  # free again
    assert "GET /health" in (tmp_path / "server.log").read_text()


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('CUDA out of memory', flush=True); sys.exit(3)"]
    log = tmp_path / "server.log"
    with pytest.raises(ServerError) as e, serve(argv, os.environ, f"http://127.0.0.1:{_free_port()}/health",
                                                 log_path=log, timeout_s=60, poll_s=0.2):
        pytest.fail("the block must not run")
    assert "exited with code 3" in str(e.value) and str(log) in str(e.value)
    assert "last line: CUDA out of memory" in str(e.value)


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    pid_file = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > '{pid_file}'; exec sleep 600"]  # starts in milliseconds, never listens
    with pytest.raises(ServerError, match=r"did not answer http://127.0.0.1:\d+/health within 1.5 s"), \
            serve(argv, os.environ, f"http://127.0.0.1:{_free_port()}/health", log_path=tmp_path / "server.log",
                  timeout_s=1.5, poll_s=0.2, grace_s=5):
        pytest.fail("the block must not run")
    assert _gone(int(pid_file.read_text()))


@pytest.mark.parametrize("overrides", [["generation=hf"], ["generation=vllm_colocate"],
                                       ["generation=vllm_server", "generation.server.start=false"]])
def test_no_server_is_started_unless_rlvr_starts_one(overrides, tmp_path):
    with vllm_server(_gen(*overrides), "tiny-random", log_path=tmp_path / "server.log") as url:
        assert url is None
    assert not (tmp_path / "server.log").exists()


# ------------------------------------------------------------------ rlvr memory: a colocated engine's share


def test_memory_counts_the_share_a_colocated_vllm_engine_reserves():
    alone = estimate("tiny-random", ["adamw"], plan=Plan(gpu_memory=80 * GB)).per_gpu["adamw"]
    share = 0.3
    with_vllm = estimate("tiny-random", ["adamw"],
                         plan=Plan(gpu_memory=80 * GB, vllm_gpu_memory_utilization=share)).per_gpu["adamw"]
    assert alone.vllm is None and with_vllm.vllm == math.ceil(share * 80 * GB)
    assert with_vllm.total == alone.total + with_vllm.vllm
    # memory where training alone fits but not beside an engine holding half of the GPU
    tight = Plan(gpu_memory=alone.total * 3 // 2, vllm_gpu_memory_utilization=0.5)
    assert estimate("tiny-random", ["adamw"], plan=Plan(gpu_memory=tight.gpu_memory)).per_gpu["adamw"].fits
    assert not estimate("tiny-random", ["adamw"], plan=tight).per_gpu["adamw"].fits


@pytest.mark.parametrize("plan,message", [
    (Plan(vllm_gpu_memory_utilization=0.3), "--vllm-gpu-memory-utilization is a share of --gpu-memory"),
    (Plan(gpu_memory=80 * GB, vllm_gpu_memory_utilization=1.0), "--vllm-gpu-memory-utilization must be in (0, 1)"),
    (Plan(gpu_memory=80 * GB, vllm_gpu_memory_utilization=0.0), "--vllm-gpu-memory-utilization must be in (0, 1)"),
])
def test_memory_refuses_a_vllm_share_it_cannot_use(plan, message):
    with pytest.raises(BadInput) as e:
        estimate("1e9", ["sgd"], plan=plan)
    assert message in str(e.value)
