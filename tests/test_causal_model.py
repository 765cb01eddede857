"""ElmForCausalLM (issue 7, paper Sec. V): parity with a hand-built causal reference, KV-cache
equivalence, generate(), save/load round trips (Auto classes and trust_remote_code)."""
import math
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

import elmlib
from helpers import all_candidate_archs, tiny_space
from elmlib.model.modeling_elm import CACHE_NAME, output_cache


def _perturbed(model, seed=0):
    """Move weights off their init, so biases and norms matter and a re-initialising load would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _reference_logits(model, ids):
    """Plain PyTorch: explicit scores, an explicit lower-triangular mask, softmax, post-LN BERT layers."""
    cfg, emb = model.config, model.elm.embeddings
    n = ids.shape[1]
    x = emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[:n] + emb.token_type_embeddings.weight[0]
    x = F.layer_norm(x, (cfg.embedding_size,), emb.LayerNorm.weight, emb.LayerNorm.bias, cfg.layer_norm_eps)
    x = x @ emb.projection.weight.T + emb.projection.bias
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for block, layer in zip(model.elm.encoder.layer, cfg.layers):
        att, heads = block.attention, layer["heads"]

        def split(t):
            return t.view(t.shape[0], n, heads, -1).transpose(1, 2)
        q = split(x @ att.self.query.weight.T + att.self.query.bias)
        k = split(x @ att.self.key.weight.T + att.self.key.bias)
        v = split(x @ att.self.value.weight.T + att.self.value.bias)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~causal, float("-inf"))
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        a = ctx @ att.output.dense.weight.T + att.output.dense.bias
        a = F.layer_norm(a + x, (cfg.hidden_size,), att.output.LayerNorm.weight, att.output.LayerNorm.bias,
                         cfg.layer_norm_eps)
        f = F.gelu(a @ block.intermediate.dense.weight.T + block.intermediate.dense.bias)
        f = f @ block.output.dense.weight.T + block.output.dense.bias
        x = F.layer_norm(f + a, (cfg.hidden_size,), block.output.LayerNorm.weight, block.output.LayerNorm.bias,
                         cfg.layer_norm_eps)
    head = model.predictions
    h = F.gelu(x @ head.dense.weight.T + head.dense.bias)
    h = F.layer_norm(h, (cfg.embedding_size,), head.LayerNorm.weight, head.LayerNorm.bias, cfg.layer_norm_eps)
    return h @ emb.word_embeddings.weight.T + head.decoder.bias


def test_uniform_bert_logits_equal_hand_built_causal_reference():
    space = tiny_space()
    arch = elmlib.Architecture.uniform(space.num_layers, "bert", "none", 24, 4)
    model = _perturbed(elmlib.ElmForCausalLM(space.config(arch)))
    ids = torch.randint(1, space.vocab_size, (3, 14), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(ids).logits
        explicit = model(ids, output_attentions=True).logits  # the explicit-probabilities path too
        ref = _reference_logits(model, ids)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explicit, ref, rtol=1e-5, atol=1e-5)
    # causal: the first 7 positions do not depend on what follows them
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] % (space.vocab_size - 1)) + 1
    with torch.no_grad():
        torch.testing.assert_close(model(changed).logits[:, :7], got[:, :7])


def test_decoder_is_tied_to_word_embeddings():
    space = tiny_space()
    model = elmlib.ElmForCausalLM(space.config(all_candidate_archs(space)[0]))
    assert model.predictions.decoder.weight is model.elm.embeddings.word_embeddings.weight


@pytest.mark.parametrize("candidate", range(6))
def test_cache_equals_full_forward_and_generate_agrees(candidate):
    space = tiny_space()
    arch = all_candidate_archs(space)[candidate]
    model = _perturbed(elmlib.ElmForCausalLM(space.config(arch)), seed=candidate)
    ids = torch.randint(1, space.vocab_size, (2, 11), generator=torch.Generator().manual_seed(candidate))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :5], use_cache=True)
        steps = [out.logits]
        for t in range(5, 11):
            out = model(ids[:, t:t + 1], cache=output_cache(out), use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    kw = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    with_cache = model.generate(ids[:, :4], use_cache=True, **kw)
    without = model.generate(ids[:, :4], use_cache=False, **kw)
    assert with_cache.shape == (2, 12) and torch.equal(with_cache, without)


def test_left_padded_batch_generates_as_unpadded_rows():
    space = tiny_space()
    arch = space.sample(random.Random(3))
    model = _perturbed(elmlib.ElmForCausalLM(space.config(arch)), seed=3)
    ids = torch.randint(1, space.vocab_size, (2, 6), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    ids[1, :2], mask[1, :2] = 0, 0
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    batch = model.generate(ids, attention_mask=mask, **kw)
    alone = model.generate(ids[1:, 2:], **kw)
    assert torch.equal(batch[1, 6:], alone[0, 4:])
    assert torch.isfinite(model(ids, attention_mask=mask).logits).all()


def test_loss_is_shifted_cross_entropy_and_positions_are_checked():
    space = tiny_space()
    model = elmlib.ElmForCausalLM(space.config(all_candidate_archs(space)[3])).eval()
    ids = torch.randint(1, space.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    out = model(ids, labels=ids)
    expected = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(out.loss, expected)
    too_long = torch.ones(1, space.max_position_embeddings + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(too_long)


def test_encoder_refuses_a_cache():
    space = tiny_space()
    model = elmlib.ElmModel(space.config(all_candidate_archs(space)[0]))
    with pytest.raises(ValueError, match="is_causal"):
        model(torch.ones(1, 4, dtype=torch.long), use_cache=True)


def test_save_and_auto_load_round_trip(tmp_path):
    space = tiny_space()
    arch = space.sample(random.Random(7))
    model = _perturbed(elmlib.ElmForCausalLM(space.config(arch)), seed=7)
    ids = torch.randint(1, space.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    model.save_pretrained(tmp_path)
    assert {"configuration_elm.py", "modeling_elm.py", "model.safetensors"} <= set(os.listdir(tmp_path))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is elmlib.ElmForCausalLM and loaded.config.is_causal
    assert loaded.predictions.decoder.weight is loaded.elm.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(loaded.generate(ids, **kw), model.generate(ids, **kw))


def test_causal_folder_loads_and_generates_without_elmlib(tmp_path):
    space = tiny_space()
    arch = space.sample(random.Random(8))
    model = _perturbed(elmlib.ElmForCausalLM(space.config(arch)), seed=8)
    ids = torch.randint(1, space.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        torch.save({"ids": ids, "logits": model(ids).logits, "gen": model.generate(ids, **kw)}, tmp_path / "ref.pt")
    model.save_pretrained(tmp_path / "model")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["elmlib"] = None  # any import of elmlib now fails
        import torch
        from transformers import AutoModelForCausalLM
        ref = torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True)
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()
        assert "elmlib" not in type(model).__module__, type(model).__module__
        with torch.no_grad():
            assert torch.equal(model(ref["ids"]).logits, ref["logits"])
        assert torch.equal(model.generate(ref["ids"], **{kw!r}), ref["gen"])
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_cache_accepted_under_both_transformers_names():
    """transformers 5.24 renamed past_key_values to cache: both input names work, not both at once,
    and the output holds the cache under the installed version's name (which generate() reads)."""
    space = tiny_space()
    model = elmlib.ElmForCausalLM(space.config(all_candidate_archs(space)[0])).eval()
    ids = torch.randint(1, space.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model(ids[:, :5], use_cache=True)
        assert output_cache(first) is not None and output_cache(first).get_seq_length() == 5
        assert CACHE_NAME in first.keys()
        by_new = model(ids[:, 5:], cache=output_cache(first), use_cache=True).logits
        first = model(ids[:, :5], use_cache=True)
        by_old = model(ids[:, 5:], past_key_values=output_cache(first), use_cache=True).logits
        torch.testing.assert_close(by_new, by_old, rtol=0, atol=0)
        cache = output_cache(model(ids[:, :5], use_cache=True))
        with pytest.raises(ValueError, match="cache or past_key_values"):
            model(ids[:, 5:], cache=cache, past_key_values=cache, use_cache=True)
        assert output_cache(model(ids)) is None
