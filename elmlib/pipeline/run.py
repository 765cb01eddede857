"""The ELM search end to end (paper Algorithm 2), resumable, one stage after another.

    python -m elmlib search --scale smoke --task boolq --run-dir runs/boolq-smoke
    run_search(resolve_config("smoke", task="boolq"), "runs/boolq-smoke")      # what notebooks call

Stages, each writing into the run folder and skipped once its ``<stage>.done.json`` exists:
1. ``pretrain``: supernet masked-LM pretraining with KD from the teacher, one uniformly sampled path
   per step; after every epoch the PCA score of every block's FFN activations and growth of the
   top-K blocks by one FFN step within the parameter cap -> pca_scores.csv, growth.csv,
   block_similarity.csv (Figs. 2, 3b, 6).
2. ``finetune``: supernet fine-tuning on the task's 90% split with KD from the task teacher.
3. ``search``: evolutionary search scoring paths on the 10% search split under the budget ->
   search_history.csv, pareto_front.csv, arch_searched.json.
4. ``heads``: linear CKA between the heads of every layer of the found architecture, Algorithm 1
   -> cka.csv and the final arch.json.
5. ``retrain``: the found architecture as a standalone model: pretraining with KD, fine-tuning with
   KD, dev evaluation -> final_metrics.csv (with latency) and model/ (save_pretrained).
6. ``suite`` (only with ``--set suite=glue|offline``): the retrained model fine-tuned with KD on every
   task of the suite and scored on each dev split -> suite-<suite>/metrics.csv (Tables I/II's protocol).

The stages are functions of the run's context (`elmlib.pipeline.stages`, `elmlib.pipeline.retrain`);
`SearchRun` is that context (`RunContext`) with the driver that runs them and records their times.
"""
from __future__ import annotations

import time
from pathlib import Path

from elmlib.errors import UserError
from elmlib.pipeline.config import SearchConfig
from elmlib.pipeline.context import RunContext
from elmlib.pipeline.preflight import STAGES, active_stages, check_stages
from elmlib.pipeline.retrain import retrain_found
from elmlib.pipeline.stages.search import search_architecture, search_heads
from elmlib.pipeline.stages.supernet import finetune_supernet, pretrain_supernet
from elmlib.pipeline.suite import suite_found

STAGE_FUNCTIONS = {"pretrain": pretrain_supernet, "finetune": finetune_supernet, "search": search_architecture,
                   "heads": search_heads, "retrain": retrain_found, "suite": suite_found}
SUPERNET_STAGES = ("pretrain", "finetune")  # data-parallel under torchrun; skipped by search_mode=proxy_only


class SearchRun(RunContext):
    """A search run folder (`RunContext`: checked, claimed and locked at construction) and its driver."""

    def run(self, stages=STAGES) -> Path:
        """Run the stages not done yet. Under torchrun, stages 1-2 run data-parallel on every rank;
        the later ones (evaluation-bound) run on rank 0 while the others leave."""
        stages = active_stages(self.cfg, check_stages(stages))  # no suite set: no suite stage
        todo = [s for s in stages if not self.done(s)]
        if todo and self.folder is not None and self.folder.read_only:
            raise UserError(f"run folder {self.dir} is read-only and stages {todo} are not done yet; "
                            "copy it somewhere writable or use another --run-dir")
        for stage in stages:
            if self.done(stage):
                continue
            if stage not in SUPERNET_STAGES and not self.dist.is_main:
                break
            if stage in SUPERNET_STAGES and self.cfg.search_mode == "proxy_only":
                continue  # the proxy ranks untrained architectures
            self.run_stage(stage)
            if stage in SUPERNET_STAGES:
                self.dist.barrier()
        return self.dir

    def run_stage(self, stage: str) -> None:
        """One stage; its wall time, earlier interrupted attempts included, goes to ``<stage>.done.json``."""
        earlier = self.earlier_seconds(stage)
        start = time.time()
        self.clock = (stage, start, earlier)
        STAGE_FUNCTIONS[stage](self)
        self.clock = None
        self.times[stage] = earlier + time.time() - start
        if self.dist.is_main:
            self.mark_done(stage, self.times[stage], **({"earlier_attempts_seconds": earlier} if earlier else {}))
            (self.dir / f"{stage}.elapsed.json").unlink(missing_ok=True)


def run_search(cfg: SearchConfig, run_dir: str | Path, overwrite: bool = False, progress: bool = True,
               stages=STAGES, stop_at: dict[str, int] | None = None) -> Path:
    """Run (or resume) the whole search; returns the run folder. ``stop_at``: simulated kills for
    tests (`RunContext`)."""
    stages = check_stages(stages)
    run = SearchRun(cfg, run_dir, overwrite, progress, stop_at)
    try:
        return run.run(stages)
    finally:
        run.close()
