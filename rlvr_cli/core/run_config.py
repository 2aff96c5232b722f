"""The typed run config: what every module below the CLI reads, frozen, with no field left to a fallback default.

One frozen dataclass per config group (`Model`, `Data`, `Optimizer`, `Adapter`, `Grpo`, `Distributed`,
`Generation`, `Logger`) and per block of `train.yaml` (`Eval`, `Sparsity`, `Trial`), under `RunConfig`. Each field
holds everything about one setting side by side, as TRL's `GRPOConfig` does: its type, its default (what a key that
the composed node lacks takes), its unit and meaning (the class docstring), and its range
(`setting(4, ge=1, why="samples per problem")`, a `rlvr_cli.core.rules.Rule`). Checks across fields are the
dataclass's `__post_init__`, so a config built by hand is checked as a composed one is. A module reads
`run.distributed.num_machines`, never `cfg.get("distributed", {}).get("num_machines", 1)`.

What rlvr hands to a library as it is (an optimizer's constructor arguments, a PEFT config's fields, TRL's
`GRPOConfig` fields, `trl vllm-serve`'s arguments) stays a mapping on its group (`Optimizer.args`, `Adapter.peft`,
`Grpo.fields`, `Generation.trl`, `VllmServer.args`): the library checks those keys, and a new one needs no change
here. The keys of it that the shipped files set and users get wrong are typed and ranged in the class's
`LIBRARY_KEYS`, so that a bad `optimizer.momentum` fails before any model loads. The mappings are plain dicts for the
libraries' sake; treat them as read-only (the accessors that hand one to a library give a copy).

`rlvr_cli.core.compose.compose_run` composes a run's config with Hydra, types and range-checks it against the
schemas `rlvr_cli.core.schema` derives from these classes, and builds the `RunConfig` here. Option files
(`conf/<group>/*.yaml`) stay what users edit; these classes are what the code sees.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rlvr_cli.core.checks import check_betas, check_lr, check_path_component, check_rank, check_tolerance
from rlvr_cli.core.errors import BadInput
from rlvr_cli.core.modes import Distributed, Generation
from rlvr_cli.core.nodes import from_node, setting
from rlvr_cli.core.precision import PRECISIONS
from rlvr_cli.core.rules import MAX_SEED, LibraryKey, Number, library_key

__all__ = ["SAVE_FORMATS", "WANDB_MODES", "Adapter", "Data", "Eval", "Grpo", "Hub", "Logger", "Model", "Optimizer",
           "RunConfig", "Sparsity", "Trial"]


#: `logger.mode` values (W&B's modes, plus `auto`).
WANDB_MODES = ("auto", "online", "offline", "disabled")
#: `save_format` values.
SAVE_FORMATS = ("full", "sparse_delta")


@dataclass(frozen=True)
class Model:
    """`model` group (`conf/model/*.yaml`): what to train; its dtypes are the top-level `precision`.

    Attributes:
        name_or_path: a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`), a local directory, or `embedded:NAME`.
    """

    name_or_path: str


@dataclass(frozen=True)
class Hub:
    """`data.hub`: a Hugging Face hub dataset, `datasets.load_dataset(id, config, split=split)`.

    Attributes:
        id, config, split: the dataset's hub id, its configuration (None: the default) and split.
        problem_key, answer_key: the columns of the problem and of the gold answer.
        answer_delimiter: the gold answer is the text after its last occurrence (GSM8K's `####`); None: all of it.
    """

    id: str
    config: str | None = None
    split: str = "train"
    problem_key: str = "problem"
    answer_key: str = "answer"
    answer_delimiter: str | None = None


@dataclass(frozen=True)
class Data:
    """`data` group (`conf/data/*.yaml`): the training problems, generated (`arithmetic`) or read from a JSONL
    file, falling back to a hub dataset (`rlvr_cli.data.problems.load_problems`).

    Attributes:
        name: the option's name (`arithmetic`, `gsm8k`, `math`, `jsonl`, `hub`).
        instruction: appended to every prompt; None: the math default (reason step by step, answer in \\boxed{}).
        num_samples, max_operand, num_terms, operators: the arithmetic generator's problem count, largest operand,
            operands per problem and operators (`+`, `-`, `*`).
        path, data_dir: the JSONL file, absolute or relative to `data_dir` (`$RLVR_DATA_DIR`); None: no file.
        problem_key, answer_key: the file's columns.
        max_samples: keep the first N problems after the seeded shuffle; None: all.
        hub: where the problems come from when the file is absent (None: nowhere).
    """

    name: str
    instruction: str | None = None
    num_samples: int = setting(2000, ge=1, example=2000)
    max_operand: int = setting(20, ge=1, why="operands are drawn from 0..max_operand", example=20)
    num_terms: int = setting(2, ge=2, example=2)
    operators: tuple[str, ...] = ("+",)
    path: str | None = None
    data_dir: str | None = None
    problem_key: str = "problem"
    answer_key: str = "answer"
    max_samples: int | None = setting(None, ge=1, why="null: all of them", example=1000)
    hub: Hub | None = setting(None, nested=Hub)


@dataclass(frozen=True)
class Optimizer:
    """`optimizer` group (`conf/optimizer/*.yaml`): a Hydra instantiation target
    (https://hydra.cc/docs/advanced/instantiate_objects/overview/) and rlvr's description of it.

    Attributes:
        name: the option's name (`sgd`, `adamw`, `muon`, ...).
        target: the optimizer class (`_target_`, a dotted import path).
        partial: `_partial_` (must be true: the Trainer passes the parameters).
        state: its analytic state model (`rlvr_cli.optimizers.state.STATE_MODELS`: `sgd`, `adam`, ...).
        requires_cuda: the class runs on CUDA only (bitsandbytes).
        hooks: a module of training hooks (`rlvr_cli.training.axes`), e.g. Muon's checks; None: none.
        lr: the learning rate (TrainingArguments' `learning_rate`).
        args: the constructor's other keyword arguments (`momentum`, `betas`, `eps`, ...).
    """

    REST: ClassVar[str] = "args"

    name: str
    target: str = setting(key="_target_")
    lr: float = setting(check=check_lr, required=True)
    partial: bool = setting(False, key="_partial_")
    state: str | None = setting(None, node_type=str)
    requires_cuda: bool = False
    hooks: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    #: The constructor arguments of the shipped classes (torch.optim, transformers' Adafactor, lion-pytorch,
    #: bitsandbytes, torch.optim.Muon) that get a type and a range before the class sees them; the class checks any
    #: other.
    LIBRARY_KEYS: ClassVar[dict[str, LibraryKey]] = {
        "momentum": library_key(float, ge=0, example=0.9),
        "dampening": library_key(float, ge=0, example=0.0),
        "nesterov": library_key(bool),
        "betas": library_key(list[float], check=check_betas),
        "eps": library_key(float, ge=0, example=1e-8),
        "alpha": library_key(float, ge=0, example=0.99),
        "scale_parameter": library_key(bool),
        "relative_step": library_key(bool),
        "warmup_init": library_key(bool),
        "ns_steps": library_key(int, ge=1, lt=100, why="Muon's Newton-Schulz iterations", example=5),
        "adjust_lr_fn": library_key(str | None, choices=("original", "match_rms_adamw")),
        "adamw_lr": library_key(float | None, check=check_lr),  # Muon's AdamW part; null: optimizer.lr
        "adamw_betas": library_key(list[float], check=check_betas),
        "adamw_eps": library_key(float, ge=0, example=1e-8),
    }

    def instantiable(self) -> dict[str, Any]:
        """What `hydra.utils.instantiate` builds: `_target_`, `_partial_`, `lr` and a copy of `args`."""
        return {"_target_": self.target, "_partial_": self.partial, "lr": self.lr, **copy.deepcopy(self.args)}


@dataclass(frozen=True)
class Adapter:
    """`adapter` group (`conf/adapter/*.yaml`): a PEFT method, or `full` fine-tuning (no `_target_`).

    Attributes:
        name: the option's name (`full`, `lora`, `dora`, `adalora`, ...).
        target: the PEFT config class (`_target_`, `peft.LoraConfig`); None for full fine-tuning.
        r: the rank; None for a method without one (IA3, LN tuning) and for full fine-tuning.
        alpha: the scaling numerator (PEFT `lora_alpha`); None where the method has none.
        dropout: the adapter's dropout probability; None where the method has none.
        post_init: dotted path of `f(peft_model)` run after PEFT builds the model (MiLoRA); None: none.
        hooks: a module of training hooks (`rlvr_cli.training.axes`), e.g. AdaLoRA's schedule; None: none.
        optimizer_factory: `loraplus` or `lorafa` (`rlvr_cli.optimizers.build`); None: the optimizer group's class.
        loraplus_lr_ratio: LoRA+'s learning rate of B over A's (arXiv 2402.12354); None: not LoRA+.
        peft: every other key, the PEFT config's fields (`lora_alpha`, `target_modules`, `init_lora_weights`,
            `use_dora`, ...), as composed.
    """

    REST: ClassVar[str] = "peft"

    name: str
    target: str | None = setting(None, key="_target_", node_type=str)  # None: absent (full fine-tuning)
    r: int | None = setting(None, check=check_rank)
    alpha: Number | None = setting(None, gt=0, example=16)
    dropout: float | None = setting(None, node_type=float, ge=0, lt=1, example=0.05)  # None: absent
    post_init: str | None = None
    hooks: str | None = None
    optimizer_factory: str | None = setting(None, choices=("loraplus", "lorafa"))
    loraplus_lr_ratio: float | None = setting(None, node_type=float, gt=0, why="LoRA+: B's learning rate over A's",
                                              example=16)
    peft: dict[str, Any] = field(default_factory=dict)

    @property
    def use_dora(self) -> bool:
        """PEFT's `use_dora` (`peft.LoraConfig`: DoRA's magnitude vector, arXiv 2402.09353), which only LoRA-family
        files set: False where the file sets none, PEFT's default
        (https://huggingface.co/docs/peft/package_reference/lora)."""
        return bool(self.peft.get("use_dora", False))

    @property
    def init_lora_weights(self) -> str:
        """PEFT's `init_lora_weights` (`peft.LoraConfig`) as lower-case text: `true` (PEFT's default, where the file
        sets none), `false`, or an init name (`pissa`, `pissa_niter_4`, `olora`, ...)."""
        return str(self.peft.get("init_lora_weights", True)).lower()

    #: The PEFT config fields the shipped files set (`peft.LoraConfig`, `peft.VeraConfig`, `peft.MissConfig`,
    #: `peft.IA3Config`, `peft.AdaLoraConfig`, ...) that get a type and a range before PEFT sees them; PEFT checks any
    #: other, and the values typed `Any` (an init name such as `pissa_niter_4`, a module list).
    LIBRARY_KEYS: ClassVar[dict[str, LibraryKey]] = {
        "init_lora_weights": library_key(Any),  # true, or a PEFT init name (pissa, pissa_niter_N, ...)
        "miss_dropout": library_key(float, ge=0, lt=1, example=0.05),
        "init_weights": library_key(Any),  # MiSS: true (balance), bat or mini
        "feedforward_modules": library_key(Any),  # IA3: modules whose input (not output) is rescaled
        "lora_alpha": library_key(Number, gt=0, example=16),
        "lora_dropout": library_key(float, ge=0, lt=1, example=0.05),
        "vera_dropout": library_key(float, ge=0, lt=1, example=0.05),
        "use_dora": library_key(bool),
        "use_rslora": library_key(bool),
        "init_r": library_key(int, ge=1, why="AdaLoRA's initial rank; adapter.r sets it", example=12),
        "target_r": library_key(int, ge=1, why="AdaLoRA's final average rank", example=8),
        "tinit": library_key(int, ge=0, why="AdaLoRA warm-up steps", example=0),
        "tfinal": library_key(int, ge=0, why="AdaLoRA final steps at the target budget", example=0),
        "deltaT": library_key(int, ge=1, why="steps between AdaLoRA's budget allocations", example=1),
        "beta1": library_key(float, gt=0, lt=1, why="EMA factor of AdaLoRA's importance scores", example=0.85),
        "beta2": library_key(float, gt=0, lt=1, why="EMA factor of AdaLoRA's uncertainty", example=0.85),
        "orth_reg_weight": library_key(float, ge=0, why="AdaLoRA's orthogonal penalty; 0: off", example=0.5),
        "total_step": library_key(int, ge=1, why="AdaLoRA schedule length; default grpo.max_steps", example=30),
        "target_modules": library_key(Any),
        "task_type": library_key(str),
    }


@dataclass(frozen=True)
class Grpo:
    """`grpo` group (`conf/grpo/*.yaml`): TRL `GRPOConfig` fields under TRL's names.

    Attributes:
        num_generations: completions per prompt (the group).
        max_steps: optimizer steps.
        per_device_train_batch_size: completions per optimizer step and device (TRL's default 8).
        gradient_accumulation_steps: micro-batches per optimizer step (transformers' default 1).
        beta: the KL coefficient (TRL's default 0.0: no reference model).
        weight_decay: decoupled weight decay, on all but biases and norms (transformers' default 0.0).
        max_grad_norm: gradient clipping threshold; None or 0: none (transformers' default 1.0).
        fields: every other key of the node, `GRPOConfig` fields that TRL checks (`grpo_fields()`: all of them).
    """

    REST: ClassVar[str] = "fields"

    num_generations: int = setting(required=True, ge=2, why="GRPO compares completions within a group", example=4)
    max_steps: int = setting(required=True, ge=1, why="optimizer steps", example=30)
    per_device_train_batch_size: int = setting(8, ge=1, why="completions per step and device", example=8)
    gradient_accumulation_steps: int = setting(1, ge=1, example=1)
    beta: float = setting(0.0, ge=0, why="KL coefficient", example=0.0)
    weight_decay: float = setting(0.0, ge=0, example=0.0)
    max_grad_norm: float | None = setting(1.0, ge=0, why="0 or null: no clipping", example=1.0)
    fields: dict[str, Any] = field(default_factory=dict)

    #: The other `GRPOConfig` / `TrainingArguments` fields the shipped files set, typed and range-checked before TRL
    #: sees them; TRL checks any other (`+grpo.FIELD=VALUE`).
    LIBRARY_KEYS: ClassVar[dict[str, LibraryKey]] = {
        "max_completion_length": library_key(int, ge=1, why="tokens per completion", example=256),
        "loss_type": library_key(str),
        "epsilon": library_key(float, ge=0, example=0.2),
        "epsilon_high": library_key(float | None, ge=0, example=0.28),
        "temperature": library_key(float, gt=0, why="sampling temperature", example=1.0),
        "scale_rewards": library_key(Any),  # "group", "batch", "none", or true / false: TRL checks it
        "gradient_checkpointing": library_key(bool),
        "lr_scheduler_type": library_key(str),
        "warmup_steps": library_key(Number, ge=0, why="steps, or a fraction of max_steps when < 1", example=0),
    }

    #: `GRPOConfig` fields that a setting outside the `grpo` group owns: set under `grpo` they would bypass its checks
    #: (`+grpo.use_vllm=true` skipped generation's and failed in TRL after the model loaded). `vllm_*` fields too.
    OWNED: ClassVar[dict[str, str]] = {"use_vllm": "generation=vllm_colocate or generation=vllm_server",
                                       "bf16": "precision=bf16-mixed or precision=bf16-true",
                                       "fp16": "precision=fp16-mixed"}

    def __post_init__(self) -> None:
        """The checks across its fields.

        Raises:
            BadInput: a field another setting owns (`OWNED`, `vllm_*`); `per_device_train_batch_size x
                gradient_accumulation_steps` not divisible by `num_generations` (TRL's generation batch holds whole
                prompt groups, single process).
        """
        for key in self.fields:
            owner = self.OWNED.get(key) or ("generation=vllm_* and its generation.vllm_* fields"
                                            if key.startswith("vllm_") else None)
            if owner:
                raise BadInput(f"grpo.{key} is set through {owner}, whose checks a grpo field would skip; drop "
                               f"grpo.{key}")
        n, batch = self.num_generations, self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % n:
            raise BadInput(
                f"per_device_train_batch_size x gradient_accumulation_steps = {batch} is not divisible by "
                f"grpo.num_generations = {n}; use a multiple of {n}, e.g. grpo.per_device_train_batch_size={n}"
            )

    def grpo_fields(self) -> dict[str, Any]:
        """Its TRL `GRPOConfig` fields: the typed ones and a copy of `fields`."""
        typed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "fields"}
        return typed | copy.deepcopy(self.fields)


@dataclass(frozen=True)
class Logger:
    """`logger` group (`conf/logger/*.yaml`): the tracking service.

    Attributes:
        name: `wandb` or `none`.
        mode: W&B's mode: `auto` (online with credentials, else offline), `online`, `offline`, `disabled`.
        project, entity, group, tags: `wandb.init`'s arguments of the same names.
    """

    name: str = "none"
    mode: str = setting("auto", choices=WANDB_MODES)
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Eval:
    """`eval` block of `train.yaml`: the final evaluation, rlvr eval's protocol.

    Attributes:
        benchmarks: benchmark names (`conf/benchmark/*.yaml`); empty: no final evaluation.
        k: samples per problem (avg@k, pass@k, maj@k).
        limit: problems per benchmark; None: all.
        temperature, top_p: sampling (temperature 0: greedy).
        max_new_tokens: tokens per completion.
        batch_size: prompts per generation batch.
        data_dir: the benchmarks' directory (`$RLVR_DATA_DIR`); None: the hub.
        extract: `boxed` (only a closed `\\boxed{}` counts) or `any` (math-verify's extraction as fallback).
    """

    benchmarks: tuple[str, ...] = setting((), node_type=Any)  # names checked by rlvr_cli.evaluation.benchmarks
    k: int = setting(4, ge=1, why="samples per problem", example=4)
    limit: int | None = setting(None, ge=1, why="problems per benchmark; null: all", example=100)
    temperature: float = setting(0.6, ge=0, why="0: greedy", example=0.6)
    top_p: float = setting(0.95, gt=0, le=1, example=0.95)
    max_new_tokens: int = setting(1024, ge=1, example=1024)
    batch_size: int = setting(16, ge=1, example=16)
    data_dir: str | None = None
    extract: str = setting("boxed", choices=("boxed", "any"), why="boxed: only a closed \\boxed{} counts")

    def __post_init__(self) -> None:
        if isinstance(self.benchmarks, str):  # `eval.benchmarks=gsm8k,math500` from a shell
            names = tuple(b.strip() for b in self.benchmarks.split(",") if b.strip())
            object.__setattr__(self, "benchmarks", names)


@dataclass(frozen=True)
class Sparsity:
    """`sparsity` block of `train.yaml`: update sparsity against the initial weights (arXiv 2505.11711).

    Attributes:
        every_n_steps: optimizer steps between measurements; 0: the last step only.
        tolerance: a weight counts as changed beyond this absolute difference too.
        max_copy_gb: the largest CPU copy of the initial weights to keep, in GB (1e9 bytes); None: no limit.
    """

    every_n_steps: int = setting(10, ge=0, why="0: the last step only", fix="sparsity=null turns it off")
    tolerance: float = setting(1e-5, check=check_tolerance)
    max_copy_gb: float | None = setting(4, gt=0, why="no limit", example=4)


@dataclass(frozen=True)
class Trial:
    """`trial` block of `train.yaml`: the Optuna trial a search cell is (`rlvr_cli.training.pruning`).

    Attributes:
        storage: the study's journal file.
        study: the study's name.
        number: the trial's number.
        pause_at: optimizer steps after which the run pauses with a checkpoint (successive halving's promotion);
            None: run to `grpo.max_steps`.
        resume: reopen the paused run directory and go on from its checkpoint.
    """

    storage: str
    study: str
    number: int = setting(required=True, ge=0, example=0)
    pause_at: int | None = setting(None, ge=1, why="optimizer steps; absent or null: run to grpo.max_steps", example=5)
    resume: bool | None = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "resume", bool(self.resume))  # null in a sweep's cell: no


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One `rlvr train` run's config, typed and frozen (`rlvr_cli.core.compose.compose_run` builds it). Keyword
    arguments only; the field order is the order in which a composed config's values are checked.

    Attributes:
        model, data, optimizer, adapter, grpo, distributed, generation, logger: the config groups.
        rewards: reward name or dotted import path -> weight (TRL `reward_weights`), nested as composed.
        eval: the final evaluation.
        sparsity: the update-sparsity monitor; None: off.
        trial: the search trial this run is; None: no search.
        seed: the random seed (data order, sampling, initialisation).
        precision: `fp32`, `bf16-mixed`, `bf16-true`, `fp16-mixed` or `auto` (`rlvr_cli.core.precision`).
        output_dir: the run directory's parent.
        run_name: the run directory's name; None: `<time>-<optimizer>-lr<lr>-<adapter>-s<seed>`.
        save_format: `full` or `sparse_delta`.
        stop_on_nonfinite: end the run `diverged` on a NaN or infinite loss, gradient norm or weight.
    """

    optimizer: Optimizer
    adapter: Adapter
    grpo: Grpo
    distributed: Distributed = field(default_factory=Distributed)
    generation: Generation = field(default_factory=Generation)
    model: Model
    rewards: dict[str, Any] = field(default_factory=dict)  # typed by rlvr_cli.core.schema.conform_rewards
    logger: Logger = field(default_factory=Logger)
    sparsity: Sparsity | None = field(default_factory=Sparsity)
    save_format: str = setting("full", choices=SAVE_FORMATS)
    precision: str = setting("auto", required=True, choices=PRECISIONS)
    seed: int = setting(0, required=True, ge=0, le=MAX_SEED, example=0)
    data: Data
    eval: Eval = field(default_factory=Eval)
    output_dir: str = "runs"
    run_name: str | None = None
    stop_on_nonfinite: bool = True
    trial: Trial | None = None

    #: Field -> its class, for the fields built from a sub-node.
    GROUPS: ClassVar[dict[str, type]] = {"model": Model, "data": Data, "optimizer": Optimizer, "adapter": Adapter,
                                         "grpo": Grpo, "distributed": Distributed, "generation": Generation,
                                         "logger": Logger, "eval": Eval, "sparsity": Sparsity, "trial": Trial}

    def __post_init__(self) -> None:
        """The checks across groups.

        Raises:
            BadInput: `run_name` not one directory name inside `output_dir`; `save_format=sparse_delta` with an
                adapter (an adapter run saves only the adapter already).
        """
        if self.run_name is not None:
            check_path_component(self.run_name)
        if self.save_format == "sparse_delta" and self.adapter.name != "full":
            raise BadInput(f"save_format=sparse_delta is for full fine-tuning; adapter={self.adapter.name} runs "
                           f"already save only the adapter (use save_format=full)")

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> RunConfig:
        """The typed config of a composed, validated run config (plain dicts: `OmegaConf.to_container`).

        Raises:
            BadInput: a key no field names (`from_node`), or a required key a node lacks.
        """
        node = dict(node)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in node:
                continue
            value = node.pop(f.name)
            group = cls.GROUPS.get(f.name)
            if group is not None and value is not None:
                value = from_node(group, value, f.name)
            elif f.name == "rewards":
                value = copy.deepcopy(dict(value or {}))
            kwargs[f.name] = value
        if node:
            key = next(iter(node))
            raise BadInput(f"{key} is not a setting of rlvr train; drop it")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` (`dataclasses.replace`), e.g. `run.replace(run_name="r1")`."""
        return dataclasses.replace(self, **changes)

    @property
    def use_wandb(self) -> bool:
        """Whether the run logs to Weights & Biases (`logger=wandb`)."""
        return self.logger.name == "wandb"
