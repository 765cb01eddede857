"""Stage sharing between run folders (``runs`` and the notebooks; issue: no stage computed twice): a
folder whose first stages equal the main run's copies them instead of recomputing, and records where
they came from in ``shared_from.json``.

    if shares_weights(main):
        share_stages(cfg, main, folder, first_stage_files(main), STAGES[:3])
"""
from __future__ import annotations

import shutil
from pathlib import Path

from elmlib.io.files import write_json
from elmlib.pipeline.config import SearchConfig
from elmlib.pipeline.preflight import STAGES
from elmlib.pipeline.runfolder import claim_run_folder

# Files of the stages from heads on (and the run's own config), which a folder sharing the first three
# stages must write itself: prefixes, so retrain_pretrain.log.jsonl and retrain_finetune.ckpt are left too.
LATER_STAGE_FILES = ("config", "heads", "retrain", "arch.", "cka", "final_metrics", "suite", "shared_from")


def first_stage_files(main: Path) -> list[str]:
    """The files of ``main``'s first three stages (pretraining, fine-tuning, evolution): every file but
    hidden ones and those of `LATER_STAGE_FILES`."""
    return sorted(p.name for p in main.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not p.name.startswith(LATER_STAGE_FILES))


def share_supernet(cfg: SearchConfig, main: Path, folder: Path) -> None:
    """Start ``folder`` from ``main``'s fine-tuned supernet (its first two stages)."""
    share_stages(cfg, main, folder, ["supernet_finetune.pt", "pretrain.done.json", "finetune.done.json"], STAGES[:2])


def shares_weights(main: Path) -> bool:
    """Whether ``main`` holds the fine-tuned supernet that a sharing folder's later stages read. A main run
    restored from its records (``runs --restore``: text files only) does not, so its dependents compute
    their first stages themselves (the same results: same seed, same settings of those stages)."""
    return (main / "supernet_finetune.pt").is_file()


def share_stages(cfg: SearchConfig, main: Path, folder: Path, names: list[str], stages) -> None:
    """Claim ``folder`` for ``cfg`` (owned and locked, as any run folder), then copy ``main``'s files
    of ``stages`` into it and record where they came from in ``shared_from.json``. Nothing is shared
    (the folder computes every stage) when ``main`` has no weights to share (`shares_weights`)."""
    if not shares_weights(main):
        return
    held = claim_run_folder(folder, cfg.to_dict(), cfg.digest())
    try:
        for name in names:
            shutil.copy2(main / name, folder / name)
        write_json({"run": str(main), "stages": list(stages)}, folder / "shared_from.json")
    finally:
        held.release()
