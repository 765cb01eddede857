"""The README's Python example runs as written."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_api_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The API in ten lines"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "my-elm" / "model.safetensors").exists()
    assert type(namespace["reloaded"]).__name__ == "ElmModel"


def test_every_image_in_the_docs_exists():
    """Markdown image links resolve relative to their file (docs/ needs ../figures/...)."""
    missing = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md.read_text()):
            if not target.startswith("http") and not (md.parent / target).is_file():
                missing.append(f"{md.relative_to(ROOT)}: {target}")
    assert not missing, missing
