import os
import tempfile
from pathlib import Path

# The hub is unreachable on the project's machines: never let a test try it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Tests write tables, figures and run folders into a scratch folder, never into the repository's
# committed results/ and figures/ (a teacher fine-tuned by a test used to upsert results/teachers.csv).
# Tests that need their own folders set these again with monkeypatch.
_SCRATCH = tempfile.mkdtemp(prefix="elmlib-tests-")
for _var, _sub in (("ELMLIB_RESULTS", "results"), ("ELMLIB_FIGURES", "figures"), ("ELMLIB_RUNS", "runs")):
    os.environ[_var] = os.path.join(_SCRATCH, _sub)

# The cache defaults to the user's cache folder (~/.cache/elmlib); the tests keep theirs beside the
# checkout (.cache/elmlib, git-ignored), as before, so a test run never fills the user's cache.
os.environ.setdefault("ELMLIB_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "elmlib"))
