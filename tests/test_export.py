import json
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (AutoModel, AutoModelForMaskedLM, AutoModelForQuestionAnswering,
                          AutoModelForSequenceClassification)

import elmlib
from helpers import batch, tiny_space

AUTO = {elmlib.ElmModel: AutoModel, elmlib.ElmForMaskedLM: AutoModelForMaskedLM,
        elmlib.ElmForSequenceClassification: AutoModelForSequenceClassification,
        elmlib.ElmForQuestionAnswering: AutoModelForQuestionAnswering}


def _first_tensor(out):
    for key in ("last_hidden_state", "logits", "start_logits"):
        if getattr(out, key, None) is not None:
            return getattr(out, key)


@pytest.fixture(scope="module")
def trained_like():
    """A supernet whose weights are moved off their init, so a load that re-initialised would show."""
    space = tiny_space()
    net = elmlib.Supernet(space, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return space, net, net.sample(random.Random(4))


@pytest.mark.parametrize("cls", list(AUTO))
def test_save_and_auto_load_round_trip(tmp_path, trained_like, cls):
    space, net, arch = trained_like
    model = net.extract(arch, cls).eval()
    ids, mask = batch(space)
    expected = _first_tensor(model(ids, attention_mask=mask))
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert {"configuration_elm.py", "blocks.py", "modeling_elm.py"} <= files
    loaded = AUTO[cls].from_pretrained(tmp_path).eval()
    assert type(loaded) is cls
    assert torch.equal(_first_tensor(loaded(ids, attention_mask=mask)), expected)
    assert elmlib.Architecture.from_dict({"layers": json.load(open(tmp_path / "config.json"))["layers"]}) == arch


def test_masked_lm_decoder_stays_tied(tmp_path, trained_like):
    _, net, arch = trained_like
    model = net.extract(arch, elmlib.ElmForMaskedLM)
    assert model.predictions.decoder.weight is model.elm.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.predictions.decoder.weight is loaded.elm.embeddings.word_embeddings.weight


def test_exported_folder_loads_without_elmlib(tmp_path, trained_like):
    """The folder carries its own code (trust_remote_code): elmlib, and so the supernet, is never imported."""
    space, net, arch = trained_like
    model = net.extract(arch).eval()
    ids, mask = batch(space)
    torch.save({"ids": ids, "mask": mask, "out": model(ids, attention_mask=mask).last_hidden_state},
               tmp_path / "ref.pt")
    model.save_pretrained(tmp_path / "model")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["elmlib"] = None  # any import of elmlib now fails
        import torch
        from transformers import AutoModel
        ref = torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True)
        model = AutoModel.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()
        assert "elmlib" not in type(model).__module__, type(model).__module__
        out = model(ref["ids"], attention_mask=ref["mask"]).last_hidden_state
        assert torch.equal(out, ref["out"]), (out - ref["out"]).abs().max()
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_mean_pooling_head_ignores_padding_and_survives_export(tmp_path):
    from elmlib.model.modeling_elm import ElmForSequenceClassification
    from elmlib.nas.space import Architecture, SearchSpace

    space = SearchSpace.preset("smoke")
    arch = Architecture.uniform(4, "mobilebert", "qv", 32, 4)
    torch.manual_seed(0)
    model = ElmForSequenceClassification(space.config(arch, num_labels=3, classifier_pooling="mean")).eval()
    ids = torch.randint(1000, 2000, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=ids.dtype)], 1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=mask.dtype)], 1)
    with torch.no_grad():
        logits = model(ids, mask).logits
        torch.testing.assert_close(model(padded, padded_mask).logits, logits, atol=1e-6, rtol=1e-5)
        cls_pooled = ElmForSequenceClassification(space.config(arch, num_labels=3))
        cls_pooled.load_state_dict(model.state_dict())
        assert not torch.allclose(cls_pooled.eval()(ids, mask).logits, logits)  # the setting matters
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.classifier_pooling == "mean"
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask).logits, logits)
    with pytest.raises(ValueError, match="classifier_pooling='max' is not allowed"):
        space.config(arch, classifier_pooling="max")
