import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from elmlib.data.teachers import load_teacher
from elmlib.model.configuration_elm import ElmConfig
from elmlib.nas.growth import grow_ffn
from elmlib.nas.importance import (ImportanceAccumulator, estimate_importance, narrow, permute_ffn_,
                                   permute_heads_, reorder_, reorder_block_, shrink_ffn_, unit_order)
from elmlib.model.blocks import build_block
from elmlib.model.modeling_elm import ElmForSequenceClassification, ElmModel, sdpa_mask
from elmlib.nas.space import Architecture
from elmlib.nas.supernet import Supernet
from elmlib.repro.importance_study import classifier_from_teacher, run_reordering
from helpers import batch, tiny_space

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "importance_reordering.ipynb"
BLOCKS = list(itertools.product(["bert", "mobilebert"], ["none", "qv", "kv"]))


def _config(**kw):
    base = dict(vocab_size=50, hidden_size=32, inner_size=16, embedding_size=16, max_position_embeddings=16,
                layers=[dict(block="bert", sharing="none", ffn_dim=24, heads=4)])
    return ElmConfig(**{**base, **kw})


def _perturb(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # move norms and biases off their 1/0 init so the comparisons have teeth
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module


def _inputs(width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 7, width, generator=g)
    mask = torch.ones(2, 7)
    mask[1, 5:] = 0
    return x, sdpa_mask(mask)


def _block(kind, sharing, num_ffn=1, ffn=24, heads=4, seed=1):
    torch.manual_seed(seed)
    return _perturb(build_block(_config(mobilebert_num_ffn=num_ffn), kind, sharing, ffn, heads), seed).eval()


def _scores_of(block, seed=0):
    x, mask = _inputs(seed=seed)
    block(x, mask).hidden.square().sum().backward()
    acc = ImportanceAccumulator(block)
    acc.update()
    block.zero_grad()
    return acc.scores()[""]


# --------------------------------------------------------------------------- importance

def test_importance_equals_a_hand_computation():
    block = _block("bert", "none")
    x, mask = _inputs()
    block(x, mask).hidden.square().sum().backward()
    acc = ImportanceAccumulator(block)
    acc.update()
    acc.update()  # a second update with the same gradients doubles everything
    s = acc.scores()[""]
    i, o = block.intermediate.dense, block.output.dense
    for j in range(24):
        want = ((i.weight[j] * i.weight.grad[j]).abs().sum() + (i.bias[j] * i.bias.grad[j]).abs()
                + (o.weight[:, j] * o.weight.grad[:, j]).abs().sum())
        assert s.ffn[0][j] == pytest.approx(2 * want.item(), rel=1e-5)
    att = block.attention
    for h in range(4):
        rows = slice(8 * h, 8 * (h + 1))
        want = sum((m.weight[rows] * m.weight.grad[rows]).abs().sum() + (m.bias[rows] * m.bias.grad[rows]).abs().sum()
                   for m in (att.self.query, att.self.key, att.self.value))
        want += (att.output.dense.weight[:, rows] * att.output.dense.weight.grad[:, rows]).abs().sum()
        assert s.heads[h] == pytest.approx(2 * want.item(), rel=1e-5)
    assert acc.steps == 2
    assert acc.scores(heads=2)[""].heads.sum() == pytest.approx(s.heads.sum().item(), rel=1e-5)
    with pytest.raises(ValueError, match="heads=3 is not allowed"):
        acc.scores(heads=3)


@pytest.mark.parametrize("partner", ["query", "key"])
def test_a_shared_projection_counts_once(partner):
    sharing = "qv" if partner == "query" else "kv"
    block = _block("bert", sharing)
    x, mask = _inputs()
    block(x, mask).hidden.square().sum().backward()
    acc = ImportanceAccumulator(block)
    acc.update()
    att = block.attention
    assert not hasattr(att.self, "value")
    rows = slice(0, 8)
    want = sum((m.weight[rows] * m.weight.grad[rows]).abs().sum() + (m.bias[rows] * m.bias.grad[rows]).abs().sum()
               for m in (att.self.query, att.self.key))
    want += (att.output.dense.weight[:, rows] * att.output.dense.weight.grad[:, rows]).abs().sum()
    assert acc.scores()[""].heads[0] == pytest.approx(want.item(), rel=1e-5)


def test_stacked_ffns_are_scored_separately_and_growth_pads_with_zeros():
    block = _block("mobilebert", "none", num_ffn=3)
    s = _scores_of(block)
    assert len(s.ffn) == 3 and all(t.shape == (24,) and (t > 0).all() for t in s.ffn)
    assert s.heads.shape == (4,)
    acc = ImportanceAccumulator(block)
    grow_ffn(block, 32, generator=torch.Generator().manual_seed(0))
    x, mask = _inputs()
    block(x, mask).hidden.sum().backward()
    acc.update()
    grown = acc.scores()[""].ffn
    # new units have zero outgoing weights: no gradient reaches their incoming row, w = 0 outgoing
    assert all(t.shape == (32,) and (t[24:] == 0).all() and (t[:24] > 0).all() for t in grown)


def test_supernet_blocks_off_the_path_gain_nothing_and_estimate_leaves_weights_alone():
    space = tiny_space(ffn_init=16)
    net = Supernet(space, seed=0)
    arch = Architecture.uniform(space.num_layers, "mobilebert", "kv", space.ffn_init, space.num_heads)
    ids, mask = batch(space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scores, acc = estimate_importance(net, [dict(input_ids=ids, attention_mask=mask)] * 2,
                                      lambda m, b: m(**b, arch=arch).last_hidden_state.square().mean())
    assert acc.steps == 2 and len(scores) == space.num_layers * 6
    for name, s in scores.items():
        on_path = name.endswith("mobilebert_kv")
        assert bool((s.ffn[0] > 0).all()) == on_path and bool((s.heads > 0).all()) == on_path
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    # reordering the supernet keeps every path's function; extraction then takes the best prefix
    net.eval()
    with torch.no_grad():
        want = net(ids, attention_mask=mask, arch=arch).last_hidden_state
        reorder_(net, scores)
        assert torch.allclose(net(ids, attention_mask=mask, arch=arch).last_hidden_state, want, atol=1e-5)
    block = net.block(0, "mobilebert", "kv")
    assert torch.equal(net.extract(arch.replace_layer(0, ffn_dim=8)).encoder.layer[0].intermediate.dense.weight,
                       block.intermediate.dense.weight[:8])
    with pytest.raises(ValueError, match="batches is empty"):
        estimate_importance(net, [], lambda m, b: 0)


def test_importance_is_deterministic():
    model = _perturb(ElmForSequenceClassification(_tiny_model_config(num_labels=2)))
    ids, mask = _ids()
    batches = [dict(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1]))] * 2
    a, _ = estimate_importance(model, batches)
    b, _ = estimate_importance(model, batches)
    for name in a:
        assert all(torch.equal(x, y) for x, y in zip(a[name].ffn, b[name].ffn))
        assert torch.equal(a[name].heads, b[name].heads)


# --------------------------------------------------------------------------- reordering

@pytest.mark.parametrize("kind, sharing, num_ffn", [(b, s, 1) for b, s in BLOCKS]
                         + [("mobilebert", s, 3) for s in ("none", "qv", "kv")])  # stacked FFNs: MobileBERT only
def test_reordering_preserves_the_block_function(kind, sharing, num_ffn):
    block = _block(kind, sharing, num_ffn)
    x, mask = _inputs()
    with torch.no_grad():
        want = block(x, mask).hidden
    s = _scores_of(block, seed=3)
    new = reorder_block_(block, s)
    with torch.no_grad():
        got = block(x, mask).hidden
    assert torch.allclose(got, want, atol=1e-5)
    assert all((t[:-1] >= t[1:]).all() for t in new.ffn) and (new.heads[:-1] >= new.heads[1:]).all()
    # the reordered block's importance is the old importance, reordered
    again = _scores_of(block, seed=3)
    assert all(torch.allclose(a, b, rtol=1e-4) for a, b in zip(again.ffn, new.ffn))
    assert torch.allclose(again.heads, new.heads, rtol=1e-4)


def test_permutations_move_what_they_say_and_reject_non_permutations():
    block = _block("bert", "qv")
    q = block.attention.self.query.weight.detach().clone()
    i = block.intermediate.dense.weight.detach().clone()
    permute_heads_(block, [2, 0, 3, 1])
    assert torch.equal(block.attention.self.query.weight[:8], q[16:24])
    permute_ffn_(block.intermediate.dense, block.output.dense, torch.arange(24).flip(0))
    assert torch.equal(block.intermediate.dense.weight[0], i[23])
    with pytest.raises(ValueError, match="not a permutation of the 4 units"):
        permute_heads_(block, [0, 0, 1, 2])
    with pytest.raises(ValueError, match="heads=3 is not allowed"):
        permute_heads_(block, [0, 1, 2], heads=3)
    assert torch.equal(unit_order(torch.tensor([1.0, 3.0, 1.0, 2.0])), torch.tensor([1, 3, 0, 2]))


def test_reordering_carries_gradients_and_optimizer_state():
    block = _block("mobilebert", "none", num_ffn=2).train()
    opt = torch.optim.Adam(block.parameters(), lr=1e-3)
    x, mask = _inputs()
    block(x, mask).hidden.sum().backward()
    opt.step()
    inter = block.intermediate.dense
    s = _scores_of(block)
    order = unit_order(s.ffn[-1])
    m_before = opt.state[inter.weight]["exp_avg"].clone()
    param = inter.weight
    reorder_block_(block, s, optimizer=opt)
    assert block.intermediate.dense.weight is param  # the Parameter object stays
    assert torch.equal(opt.state[inter.weight]["exp_avg"], m_before[order])
    block(x, mask).hidden.sum().backward()
    opt.step()  # shapes stay consistent


def _tiny_model_config(**kw):
    layers = [dict(block=b, sharing=s, ffn_dim=24, heads=4) for b, s in BLOCKS]
    return _config(layers=layers, mobilebert_num_ffn=2, hidden_dropout_prob=0.0, **kw)


def _ids(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[-1, 6:] = 0
    ids[-1, 6:] = 0
    return ids, mask


@pytest.mark.parametrize("model_class", [ElmModel, ElmForSequenceClassification])
def test_reordering_preserves_whole_models_with_padding(model_class):
    torch.manual_seed(0)
    model = _perturb(model_class(_tiny_model_config(num_labels=3))).eval()
    ids, mask = _ids()

    def run():
        with torch.no_grad():
            out = model(ids, attention_mask=mask)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state

    want = run()
    loss = (lambda m, b: m(**b).last_hidden_state.square().mean()) if model_class is ElmModel else None
    labels = {} if model_class is ElmModel else dict(labels=torch.tensor([0, 2, 1]))
    scores, _ = estimate_importance(model, [dict(input_ids=ids, attention_mask=mask, **labels)], loss)
    reorder_(model, scores)
    assert torch.allclose(run(), want, atol=1e-5)
    with pytest.raises(ValueError, match="scores have no entry for block"):
        reorder_(model, {})


# --------------------------------------------------------------------------- narrowing and shrinking

def _dead_units_block(kind="bert", sharing="none", dead=slice(0, 12)):
    """A block whose first half of FFN units contributes nothing (zero outgoing weights) - so the
    plain prefix keeps exactly the useless units and the importance prefix must do better."""
    block = _block(kind, sharing)
    with torch.no_grad():
        block.output.dense.weight[:, dead] = 0
    return block


@pytest.mark.parametrize("kind, sharing", [("bert", "none"), ("mobilebert", "qv")])
def test_importance_prefix_beats_the_plain_prefix_when_it_must(kind, sharing):
    block = _dead_units_block(kind, sharing)
    x, mask = _inputs()
    with torch.no_grad():
        full = block(x, mask).hidden
        plain = narrow(block, 12)(x, mask).hidden
    s = _scores_of(block)
    assert (s.ffn[0][:12] == 0).all() and (s.ffn[0][12:] > 0).all()
    best = narrow(block, 12, s)
    with torch.no_grad():
        smart = best(x, mask).hidden
    assert torch.allclose(smart, full, atol=1e-5)  # the dead units were the ones dropped
    assert (plain - full).abs().max() > 0.1
    # narrow() copies: the original keeps all its units
    assert block.intermediate.dense.weight.shape[0] == 24 and best.intermediate.dense.weight.shape[0] == 12


def test_narrowing_equals_the_elastic_prefix_and_rounds_trips_as_a_model(tmp_path):
    torch.manual_seed(0)
    model = _perturb(ElmForSequenceClassification(_tiny_model_config(num_labels=2))).eval()
    ids, mask = _ids()
    small = narrow(model, [8, 16, 24, 8, 100, 12])
    assert [l["ffn_dim"] for l in small.config.layers] == [8, 16, 24, 8, 24, 12]
    assert [l["ffn_dim"] for l in model.config.layers] == [24] * 6
    x = model.elm.embeddings(ids)
    with torch.no_grad():
        h = x
        for block, dim in zip(model.elm.encoder.layer, [8, 16, 24, 8, 24, 12]):
            h = block(h, sdpa_mask(mask), ffn_dim=dim).hidden
        want = model.classifier(h)
        got = small(ids, attention_mask=mask).logits
    assert torch.allclose(got, want, atol=1e-5)
    small.save_pretrained(tmp_path / "m")
    loaded = ElmForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(ids, attention_mask=mask).logits, got, atol=1e-5)
    with pytest.raises(ValueError, match="ffn_dim has 2 entries but the model has 6 blocks"):
        narrow(model, [8, 8])
    with pytest.raises(ValueError, match="ffn_dim=0 is not allowed"):
        narrow(model, 0)


def test_shrinking_a_grown_block_keeps_its_important_units():
    """Growth appends units; after training, shrinking with importance keeps the useful ones,
    whichever end they sit at (here the old units are dead and the grown ones carry the function)."""
    block = _dead_units_block(dead=slice(0, 24))
    grow_ffn(block, 36, init="normal", std=0.2, generator=torch.Generator().manual_seed(0))
    x, mask = _inputs()
    with torch.no_grad():
        full = block(x, mask).hidden
    s = _scores_of(block)
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    shrink_ffn_(block, 12, s, optimizer=opt)
    assert block.intermediate.dense.weight.shape == (12, 32) and block.output.dense.weight.shape == (32, 12)
    with torch.no_grad():
        assert torch.allclose(block(x, mask).hidden, full, atol=1e-5)
    with pytest.raises(ValueError, match="new_dim=13 is not allowed; expected 1..12"):
        shrink_ffn_(block, 13)


# --------------------------------------------------------------------------- the measurement helpers

def test_classifier_from_teacher_reproduces_the_teacher_encoder():
    bert = load_teacher(output_hidden_states=False, output_attentions=False)
    model = classifier_from_teacher(2, layers=2).eval()
    ids, mask = _ids()
    bert.encoder.layer = bert.encoder.layer[:2]
    with torch.no_grad():
        want = bert(ids, attention_mask=mask).last_hidden_state
        got = model.elm(ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(got[mask.bool()], want[mask.bool()], atol=1e-4)
    with pytest.raises(ValueError, match="layers=9 is not allowed"):
        classifier_from_teacher(2, layers=9)


def test_run_reordering_rejects_bad_settings():
    with pytest.raises(ValueError, match="scale='huge' is not allowed"):
        run_reordering(scale="huge")
    with pytest.raises(ValueError, match="task='rotten_tomatoes_score' is not allowed"):
        run_reordering(task="rotten_tomatoes_score")
    with pytest.raises(ValueError, match=r"fractions=\[0\] are not allowed"):
        run_reordering(fractions=(0, 0.5))


def test_notebook_has_parameters_cell_and_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["cells"][0]["cell_type"] == "markdown"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for name in ("scale", "seed", "run_dir", "out_dir"):
        assert f"{name} =" in "".join(tagged[0]["source"])
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None
            assert "def " not in "".join(cell["source"])


@pytest.mark.notebooks
def test_notebook_runs_at_smoke_scale(tmp_path):
    import papermill as pm

    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                        parameters=dict(scale="smoke", seed=0, run_dir=str(tmp_path / "run"),
                                        out_dir=str(tmp_path / "out")), cwd=str(ROOT / "notebooks"))
    table = pd.read_csv(tmp_path / "out" / "results" / "importance_reordering.csv")
    assert {"scale", "seed", "task", "fraction", "ffn_dim", "order", "accuracy"} <= set(table.columns)
    assert (table["scale"] == "smoke").all() and (table["seed"] == 0).all()
    assert set(table["order"]) == {"original", "importance", "reversed"} and len(table) == 15
    assert table["accuracy"].between(0, 1).all()
    full = table[table["fraction"] == 1.0]["accuracy"]
    assert full.max() - full.min() < 1e-9  # reordering is function-preserving: the same model at 100%
    assert full.iloc[0] > 0.6  # it learned something (chance is ~0.5)
    assert (tmp_path / "out" / "results" / "importance_reordering.provenance.json").exists()
    for ext in ("png", "pdf"):
        fig = tmp_path / "out" / "figures" / f"importance_reordering.{ext}"
        assert fig.exists() and fig.stat().st_size > 5000
