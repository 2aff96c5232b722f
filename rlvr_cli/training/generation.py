"""vLLM generation for `rlvr train generation=vllm_*`: the checks of a `generation` choice made before any model
loads, the TRL `GRPOConfig` fields of a choice, and the vLLM server rlvr starts (its GPUs, command line, health wait
and stop). Named after the config group it serves, `conf/generation/`.

What a choice is comes from the traits its file states (`use_vllm`, `vllm_mode`: `rlvr_cli.core.modes`), never from
its name. Three files (`conf/generation/`): `hf` (transformers' `generate` inside the training process), `vllm_colocate`
(TRL `use_vllm=True`, `vllm_mode="colocate"`: a vLLM engine in every training process, sharing its GPU) and
`vllm_server` (TRL `vllm_mode="server"`: a separate vLLM server, started by rlvr on GPUs of its own or already
running at a host and port). TRL's guide: https://huggingface.co/docs/trl/main/en/vllm_integration; vLLM's engine
arguments: https://docs.vllm.ai/en/latest/configuration/engine_args.html.

Training with vLLM needs CUDA (TRL's weight sync). Where a choice cannot run, it is refused in one line (`BadInput`)
before any model loads; the checks never import vLLM (whether it can run here is
`rlvr_cli.evaluation.vllm.require_vllm`, shared with `rlvr eval --backend vllm`; this module imports TRL's server
script only to build a command line).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlvr_cli.core import modes
from rlvr_cli.core.errors import BadInput, one_line
from rlvr_cli.core.groups import group_options
from rlvr_cli.core.modes import Generation, VllmServer
from rlvr_cli.core.nodes import from_node
from rlvr_cli.evaluation.vllm import require_vllm
from rlvr_cli.models.loading import model_path

#: Hosts that mean "this machine" to a server that listens on them.
ANY_HOST = ("0.0.0.0", "::", "")
#: An HTTP opener that ignores `http_proxy`: health probes go straight to the server.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """The vLLM server rlvr started exited, or did not answer its health route in time. One line: what happened,
    the URL, and the server's log file."""


def check_settings(gen: Generation, *, num_processes: int) -> None:
    """The checks of a `generation` choice that need no GPU and span several keys (each value's type and range was
    checked when the run config was made, `rlvr_cli.core.compose.compose_run`): the choice's TRL mode, and what
    spans several keys. Used by `check_generation` first, so a bad value is named even on a machine without vLLM.

    Args:
        gen: the run's `generation` (`conf/generation/*.yaml` plus overrides).
        num_processes: training processes over all machines (the world size).

    Raises:
        BadInput: `use_vllm` or `vllm_mode` that contradict the choice; `vllm_tensor_parallel_size` not dividing the
            processes (colocate: TRL groups that many processes around one engine); `server.gpus` whose count is not
            `tensor_parallel_size x data_parallel_size`; a `server` field `trl vllm-serve` does not take;
            `vllm_server_base_url` with `server.start`.
    """
    name = gen.name
    stated = backend_traits(name)  # what the file says it is; an override may not make it another backend
    use_vllm, want = gen.use_vllm, stated.vllm_mode
    if not stated.use_vllm:
        if use_vllm:
            vllm = " or ".join(f"generation={n}" for n in group_options("generation") if backend_traits(n).use_vllm)
            raise BadInput(f"generation={name} samples with transformers' generate, got generation.use_vllm=true; "
                           f"use {vllm}")
        return
    if not use_vllm or gen.vllm_mode != want:
        raise BadInput(f"generation={name} needs generation.use_vllm=true and generation.vllm_mode={want}, got "
                       f"{use_vllm} and {gen.vllm_mode!r}; drop those overrides, or pick the generation file "
                       f"of that mode")
    if want == "colocate":
        tp = gen.vllm_tensor_parallel_size
        if num_processes % tp:
            raise BadInput(f"generation.vllm_tensor_parallel_size={tp} must divide the {num_processes} training "
                           f"process(es) (TRL runs one vLLM engine per group of {tp}); e.g. "
                           f"generation.vllm_tensor_parallel_size=1")
        return
    server = gen.server
    if server is None or not server.start:
        return
    if gen.vllm_server_base_url:
        raise BadInput(f"generation.vllm_server_base_url={gen.vllm_server_base_url!r} names a running server, "
                       "but generation.server.start=true starts one: set generation.server.start=false, or drop "
                       "vllm_server_base_url")
    server_args(gen, "MODEL")  # a field trl vllm-serve does not take
    gpus = server.gpus
    if gpus is not None:
        if len(gpus) != server.size or len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
            raise BadInput(f"generation.server.gpus={list(gpus)} must be {server.size} distinct GPU ids >= 0 "
                           f"(server.tensor_parallel_size x server.data_parallel_size); e.g. "
                           f"generation.server.gpus=[{num_processes}]")


def backend_traits(name: str) -> Generation:
    """The generation file `name` as composed without overrides (`generation=NAME` alone): the traits it states
    (`use_vllm`, `vllm_mode`; `rlvr_cli.core.modes`), its own or those of a file it extends (`defaults:`)."""
    from rlvr_cli.core.compose import compose, plain

    return from_node(Generation, plain(compose([f"generation={name}"]).generation), "generation")


def check_generation(gen: Generation, *, num_processes: int, local_processes: int | None = None,
                     main_process: bool = True) -> None:
    """Check a `generation` choice before any model loads: `check_settings`, then (vLLM choices) that vLLM and
    CUDA are there, then, for a server rlvr starts, that its address is this machine's and free and that it has
    GPUs of its own. `hf` needs nothing.

    Args:
        gen: the run's `generation`.
        num_processes: training processes over all machines (TRL's world size).
        local_processes: training processes on this machine, which use CUDA devices 0..local_processes-1 of
            the visible ones (one per `LOCAL_RANK`); default `num_processes`.
        main_process: whether this is the process that starts the server (global rank 0); the other ranks skip the
            address and GPU checks of the server, which concern rank 0's machine.

    Raises:
        BadInput: one line naming the value and the fix: `check_settings`' refusals; `require_vllm`'s (vLLM not
            installed, no CUDA GPU); `check_server_address`'s; `server_gpus`' (not enough GPUs beside the
            training processes, or `server.gpus` overlapping theirs).

    Sources: TRL's vLLM integration, https://huggingface.co/docs/trl/main/en/vllm_integration (colocate and
    server modes, `trl vllm-serve`).
    """
    check_settings(gen, num_processes=num_processes)
    if not gen.use_vllm:  # the trait, as its file states it (check_settings refuses an override of it)
        return
    require_vllm(f"generation={gen.name}", "generation=hf")
    if main_process and modes.starts_server(gen):
        check_server_address(gen)
        import torch

        server_gpus(gen, local_processes=local_processes or num_processes,
                    visible=visible_gpus(torch.cuda.device_count()))


def grpo_fields(gen: Generation) -> dict[str, Any]:
    """The TRL `GRPOConfig` fields of a `generation` choice (`Generation.grpo_fields`): its TRL fields under their
    TRL names, less rlvr's own (`name`, `server`); TRL's own defaults for `hf`; for `vllm_colocate` e.g.
    `{"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3, ...}`.

    Field reference: https://huggingface.co/docs/trl/main/en/grpo_trainer (GRPOConfig, "Parameters that control
    generation acceleration powered by vLLM"). A misspelled `+generation.FIELD` makes `GRPOConfig(...)` raise
    `TypeError`, as a misspelled `+grpo.FIELD` does.
    """
    return gen.grpo_fields()


# --- the server rlvr starts ---------------------------------------------------------------------------------------


def visible_gpus(count: int, environ: Mapping[str, str] | None = None) -> list[int] | None:
    """The CUDA device ids this process sees, in order: `CUDA_VISIBLE_DEVICES` when it lists integers, else
    `0..count-1`; None when it lists UUIDs or MIG names (then GPU ids cannot be compared).

    Args:
        count: `torch.cuda.device_count()`.
        environ: the environment; default `os.environ`.
    """
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return list(range(count))
    ids = [s.strip() for s in listed.split(",") if s.strip()]
    if not all(s.isdigit() for s in ids):
        return None
    return [int(s) for s in ids][:count] if count else [int(s) for s in ids]


def server_gpus(gen: Generation, *, local_processes: int, visible: Sequence[int] | None) -> list[int]:
    """The CUDA device ids (as `CUDA_VISIBLE_DEVICES` takes them) of the server rlvr starts.

    Training rank `LOCAL_RANK=i` uses visible device i, so the training processes of this machine hold
    `visible[:local_processes]`. `generation.server.gpus` null takes the next `tensor_parallel_size x
    data_parallel_size` visible devices after those; a list must avoid them and be visible.

    Args:
        gen: the run's `generation` (`vllm_server`).
        local_processes: training processes on this machine.
        visible: `visible_gpus(...)`; None: unknown ids (UUIDs), only an explicit `server.gpus` works.

    Raises:
        BadInput: not enough GPUs beside the training processes; `server.gpus` that the training processes use
            or that this process cannot see.
    """
    server = gen.server or VllmServer()
    need, gpus = server.size, server.gpus
    if visible is None:
        if gpus is None:
            raise BadInput("CUDA_VISIBLE_DEVICES names GPUs by UUID, so rlvr cannot pick the vLLM server's: set "
                           "generation.server.gpus=[ID,...]")
        return list(gpus)
    training = list(visible[:local_processes])
    if gpus is None:
        free = list(visible[local_processes:])
        if len(free) < need:
            raise BadInput(f"generation=vllm_server needs {need} GPU(s) of its own beside the {local_processes} "
                           f"training process(es), and this machine shows {len(visible)}: lower "
                           f"distributed.num_processes, or use a running server (generation.server.start=false)")
        return free[:need]
    if set(gpus) & set(training):
        raise BadInput(f"generation.server.gpus={list(gpus)} overlaps the GPUs of the training processes "
                       f"({training}: rank i uses visible GPU i); e.g. generation.server.gpus={[visible[-1]]} with "
                       f"distributed.num_processes={len(visible) - 1}")
    if not set(gpus) <= set(visible):
        raise BadInput(f"generation.server.gpus={list(gpus)} names GPUs this process cannot see (visible: "
                       f"{list(visible)}); pick some of those")
    return list(gpus)


def _probe_host(host: str) -> str:
    """The host to reach a server listening on `host` from this machine (`0.0.0.0` -> `127.0.0.1`)."""
    return "127.0.0.1" if host in ANY_HOST else host


def check_server_address(gen: Generation) -> None:
    """The address a server rlvr starts will listen on (`vllm_server_host:vllm_server_port`) is this machine's
    and free: a test socket binds to it and is closed again.

    Args:
        gen: the run's `generation` (`vllm_server`).

    Raises:
        BadInput: the host is not an address of this machine (rlvr starts the server here), or the port is
            taken (a server already running there: use it with `generation.server.start=false`).
    """
    host, port = gen.vllm_server_host, gen.vllm_server_port
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BadInput(f"generation.vllm_server_host={host!r} does not resolve ({e.strerror}); e.g. "
                       "generation.vllm_server_host=127.0.0.1") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT port is free
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise BadInput(f"generation.vllm_server_port={port} is taken on {host}: pick another port, or use "
                               "the server running there with generation.server.start=false") from None
            raise BadInput(f"generation.vllm_server_host={host!r} is not an address of this machine, where rlvr "
                           f"starts the server ({e.strerror}); use 127.0.0.1, or generation.server.start=false "
                           "for a server running there") from None


def server_args(gen: Generation, model: str) -> Any:
    """TRL's `trl vllm-serve` arguments (`trl.scripts.vllm_serve.ScriptArguments`) of a `vllm_server` choice:
    `generation.server`'s fields under their TRL names (less rlvr's `start` and `gpus`), the model, and the host
    and port the trainer connects to (`vllm_server_host`, `vllm_server_port`).

    Args:
        gen: the run's `generation` (`vllm_server`).
        model: what the server loads: a model directory or hub id.

    Returns:
        a `trl.scripts.vllm_serve.ScriptArguments`.

    Raises:
        BadInput: a `generation.server` field that `trl vllm-serve` does not take.
    """
    from trl.scripts.vllm_serve import ScriptArguments

    fields = (gen.server or VllmServer()).script_arguments()
    try:
        return ScriptArguments(model=model, host=gen.vllm_server_host, port=gen.vllm_server_port, **fields)
    except TypeError as e:
        raise BadInput(f"generation.server: {one_line(e)}; see the arguments of `trl vllm-serve --help`") from None


def server_command(gen: Generation, model: str, gpus: Sequence[int],
                   environ: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the vLLM server of a `vllm_server` choice, as TRL builds it.

    `trl vllm-serve` (TRL 1.16) only runs vLLM's own server: `trl.scripts.vllm_serve.build_command` turns its
    arguments into `python -m vllm.entrypoints.cli.main serve MODEL ...` with the settings TRL's trainer relies
    on (an NCCL weight-transfer engine, processed logprobs), and it sets `VLLM_SERVER_DEV_MODE=1` for the
    weight-update routes. rlvr calls the same function with `server_args` and gives the server its GPUs through
    `CUDA_VISIBLE_DEVICES`. Source: https://github.com/huggingface/trl/blob/main/trl/scripts/vllm_serve.py.

    Args:
        gen: the run's `generation` (`vllm_server`).
        model: a model directory or hub id (an embedded name resolves to its cache directory).
        gpus: CUDA device ids for the server (`server_gpus`).
        environ: the environment to extend; default `os.environ`.

    Returns:
        `(argv, env)` for `subprocess.Popen`.

    Raises:
        BadInput: a `generation.server` field that `trl vllm-serve` does not take.
    """
    from trl.scripts.vllm_serve import build_command

    args = server_args(gen, model_path(model))
    env = {**(os.environ if environ is None else environ), "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)),
           "VLLM_SERVER_DEV_MODE": "1"}
    return build_command(args), env


def _log_tail(path: Path, lines: int = 1) -> str:
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log_path: Path,
                 poll_s: float = 1.0) -> float:
    """Wait until `GET url` answers 200 (vLLM's `/health`, the route TRL's `VLLMClient.check_server` polls).

    Args:
        url: the health URL, e.g. `http://127.0.0.1:8000/health`.
        proc: the server process; its exit ends the wait.
        timeout_s: seconds to wait at most.
        log_path: the server's log, named in errors.
        poll_s: seconds between attempts.

    Returns:
        seconds waited.

    Raises:
        ServerError: the process exited first, or `timeout_s` passed.
    """
    start = time.monotonic()
    while True:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path)
            raise ServerError(f"the vLLM server exited with code {code} before answering {url}; log: {log_path}"
                              + (f" (last line: {tail})" if tail else ""))
        try:  # no proxy: the server is on this machine (http_proxy would send the probe elsewhere)
            with _NO_PROXY.open(url, timeout=max(poll_s, 1.0)) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() - start >= timeout_s:
            raise ServerError(f"the vLLM server did not answer {url} within {timeout_s:g} s "
                              f"(generation.vllm_server_timeout); log: {log_path}")
        time.sleep(poll_s)


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> int | None:
    """Stop a server started in its own session (`start_new_session=True`): SIGTERM to its process group (the
    server and the workers it forked), then SIGKILL after `grace_s` seconds. Returns its exit code.

    Args:
        proc: the server process, started with `start_new_session=True` (its pid is its process group's id).
        grace_s: seconds between SIGTERM and SIGKILL.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by a server that exited by itself
    return proc.returncode


@contextlib.contextmanager
def serve(argv: Sequence[str], env: Mapping[str, str], health_url: str, *, log_path: Path, timeout_s: float,
          poll_s: float = 1.0, grace_s: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process for the duration of a `with` block: start `argv` in its own session (so a Ctrl-C on
    the terminal reaches rlvr, which stops it, and not the server), output appended to `log_path`, wait for
    `health_url` (`wait_healthy`), yield the process, and stop it and its workers on the way out
    (`stop_process_group`), whatever ends the block.

    Args:
        argv, env: the command line and environment (`server_command`).
        health_url: the URL that answers 200 once the server is up (`wait_healthy`).
        log_path: the file the server's stdout and stderr are appended to (its folder is created).
        timeout_s, poll_s: as `wait_healthy`. grace_s: as `stop_process_group`.

    Raises:
        ServerError: the server exited or did not answer in `timeout_s` seconds (it is stopped first).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_healthy(health_url, proc, timeout_s, log_path, poll_s)
            yield proc
        finally:
            stop_process_group(proc, grace_s)


@contextlib.contextmanager
def vllm_server(gen: Generation, model: str, *, log_path: Path, local_processes: int = 1,
                visible: Sequence[int] | None = None) -> Iterator[str | None]:
    """The vLLM server of a `generation` choice, for the duration of a `with` block around training.

    For `vllm_server` with `server.start`: starts `server_command`'s server on `server_gpus`, waits for its
    `/health` for at most `vllm_server_timeout` seconds, yields its base URL, and stops it at the end. Any other
    choice (hf, colocate, a server already running) starts nothing and yields None. Call it on the main process
    only: TRL's main process is the one that talks to the server.

    Args:
        gen: the run's `generation`, checked by `check_generation`.
        model: a model directory or hub id (an embedded name resolves to its cache directory): what the server
            loads; TRL then pushes the trained weights into it after each optimizer step.
        log_path: the server's output (e.g. `<run>/vllm_server.log`).
        local_processes: training processes on this machine (they hold the first visible GPUs).
        visible: the visible CUDA device ids; default `visible_gpus(torch.cuda.device_count())`.

    Raises:
        BadInput: as `server_gpus` and `server_command`.
        ServerError: the server exited or did not become healthy in time.
    """
    if not modes.starts_server(gen):
        yield None
        return
    if visible is None:
        import torch

        visible = visible_gpus(torch.cuda.device_count())
    gpus = server_gpus(gen, local_processes=local_processes, visible=visible)
    argv, env = server_command(gen, model, gpus)
    base = f"http://{_probe_host(gen.vllm_server_host)}:{gen.vllm_server_port}"
    with serve(argv, env, f"{base}/health", log_path=log_path, timeout_s=gen.vllm_server_timeout):
        yield base
