import random

import pytest
import torch

import elmlib
from elmlib.nas.space import Architecture
from helpers import all_candidate_archs, batch, tiny_space


def test_extracted_model_equals_the_supernet_path():
    space = tiny_space()
    net = elmlib.Supernet(space, seed=0).eval()
    ids, mask = batch(space)
    archs = all_candidate_archs(space) + [net.sample(random.Random(s)) for s in range(6)]
    for arch in archs:
        model = net.extract(arch).eval()
        expected = net(ids, attention_mask=mask, arch=arch).last_hidden_state
        assert torch.allclose(model(ids, attention_mask=mask).last_hidden_state, expected, atol=1e-6)
        assert space.num_params(arch) == sum(p.numel() for p in model.parameters())


def test_extraction_into_task_models_copies_the_encoder():
    space = tiny_space()
    net = elmlib.Supernet(space, seed=0).eval()
    arch = net.sample(random.Random(3))
    ids, mask = batch(space)
    expected = net(ids, attention_mask=mask, arch=arch).last_hidden_state
    for cls in (elmlib.ElmForSequenceClassification, elmlib.ElmForQuestionAnswering, elmlib.ElmForMaskedLM):
        model = net.extract(arch, cls).eval()
        assert torch.allclose(model.elm(ids, attention_mask=mask).last_hidden_state, expected, atol=1e-6)
    mlm = net.extract(arch, elmlib.ElmForMaskedLM).eval()  # the supernet's MLM head comes along
    assert torch.allclose(mlm(ids, attention_mask=mask).logits, net.mlm_logits(expected), atol=1e-5)
    assert net.predictions.decoder.weight is net.embeddings.word_embeddings.weight


def test_only_the_sampled_path_takes_part_in_backward():
    space = tiny_space()
    net = elmlib.Supernet(space, seed=0)
    arch = net.sample(random.Random(1))
    ids, mask = batch(space)
    net(ids, attention_mask=mask, arch=arch).last_hidden_state.sum().backward()
    for i, layer in enumerate(arch.layers):
        for (block, sharing) in elmlib.CANDIDATES:
            grads = [p.grad for p in net.block(i, block, sharing).parameters()]
            if (block, sharing) == (layer.block, layer.sharing):
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads)


def test_sampling_and_initialisation_are_seeded_and_leave_global_rngs_alone():
    space = tiny_space()
    state = torch.get_rng_state()
    a, b, c = elmlib.Supernet(space, seed=0), elmlib.Supernet(space, seed=0), elmlib.Supernet(space, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in n.parameters()]) for n in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    random.seed(0)
    first = [a.sample(random.Random(5)) for _ in range(3)]
    random.seed(99)
    assert [a.sample(random.Random(5)) for _ in range(3)] == first


def test_candidate_subsets_and_errors():
    space = tiny_space()
    net = elmlib.Supernet(space, candidates=[("bert", "none"), ("mobilebert", "none")])
    assert len(net.layers[0]) == 2
    assert all(l.sharing == "none" for s in range(10) for l in net.sample(random.Random(s)).layers)
    ids, mask = batch(space)
    with pytest.raises(ValueError, match=r"layer 0: \('bert', 'qv'\) is not a candidate"):
        net(ids, arch=Architecture.uniform(3, "bert", "qv", 8, 4))
    with pytest.raises(ValueError, match="layer 0: ffn_dim=16 exceeds the 8 units"):
        net(ids, arch=Architecture.uniform(3, "bert", "none", 16, 4))
    with pytest.raises(ValueError, match="candidates=.*not allowed"):
        elmlib.Supernet(space, candidates=[("gru", "none")])


def test_outputs_for_distillation_and_analysis():
    space = tiny_space()
    net = elmlib.Supernet(space).eval()
    arch = Architecture.uniform(3, "mobilebert", "qv", 8, 2)
    ids, mask = batch(space)
    out = net(ids, attention_mask=mask, arch=arch, output_hidden_states=True, output_attentions=True,
              output_head_outputs=True, output_ffn_hidden=True)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    assert out.attentions[0].shape == (3, 2, 12, 12)
    assert out.head_outputs[0].shape == (3, 2, 12, space.inner_size // 2)
    assert out.ffn_hidden_states[0].shape == (3, 12, 8)
