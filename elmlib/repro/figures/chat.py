"""Fig. 4 (qualitative chat examples) in the causal-LM setting: a table figure of ``fig4_chat_examples.csv``
(``elmlib.repro.fig4_chat``): per prompt, the prompt as the models saw it (shortened), the reference
answer and every model's greedy response beside its name and parameter count."""
from __future__ import annotations

import textwrap

import pandas as pd

from elmlib.repro.figures.style import pyplot

PROMPT_CHARS = 320   # prompts (instruction + article or passage) are shortened to this many characters
WRAP = 100           # characters per line of the text column


def _wrap(text, width: int = WRAP) -> str:
    text = "" if pd.isna(text) else " ".join(str(text).split())
    return textwrap.fill(text, width) if text else "(empty response)"


def _size(params) -> str:
    return f"{params / 1e6:.1f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"


def _rows(df: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """(label, wrapped text, is a prompt header) for every line group of the table, prompt by prompt."""
    out = []
    for pid, g in df.groupby("prompt_id", sort=True):
        first = g.iloc[0]
        prompt = " ".join(str(first.prompt).split())
        prompt = prompt if len(prompt) <= PROMPT_CHARS else prompt[:PROMPT_CHARS].rstrip() + " [...]"
        out.append((f"{first.task} #{pid}: prompt", _wrap(prompt), True))
        out.append(("reference", _wrap(first.reference), False))
        out += [(f"{r.model} ({_size(r.params)})", _wrap(r.response), False) for r in g.itertuples()]
    return out


def plot_fig4(df: pd.DataFrame):
    """The chat-examples table figure: one block per prompt, one line group per model."""
    plt = pyplot()
    rows = _rows(df)
    heights = [text.count("\n") + 1.6 for _, text, _ in rows]
    total = sum(heights) + 2
    fig, ax = plt.subplots(figsize=(12, 0.17 * total + 0.4))
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(total, 0))
    ax.text(0, 0.2, f"Greedy responses to held-out instructions ({df.scale.iloc[0]} scale, seed {df.seed.iloc[0]})",
            va="top", fontsize=10, weight="bold", parse_math=False)
    y = 2.0
    for (label, text, header), h in zip(rows, heights):
        if header:
            ax.axhline(y - 0.3, color="0.3", lw=0.8)
        color = "0.1" if header else "0.25"
        ax.text(0, y, label, va="top", fontsize=8, weight="bold", color=color, parse_math=False)
        ax.text(0.22, y, text, va="top", fontsize=8, family="monospace", style="italic" if header else "normal",
                color=color, parse_math=False)
        y += h
    return fig
