import random

import pytest
import torch

import elmlib
from elmlib.nas.growth import grow_ffn
from helpers import batch, tiny_space


@pytest.mark.parametrize("candidate", elmlib.CANDIDATES)
def test_growth_keeps_the_output_at_the_moment_of_growth(candidate):
    space = tiny_space(mobilebert_num_ffn=2)
    net = elmlib.Supernet(space, seed=0).eval()
    arch = elmlib.Architecture.uniform(3, *candidate, 8, 4)
    ids, mask = batch(space)
    before = net(ids, attention_mask=mask, arch=arch).last_hidden_state
    for layer in range(3):
        grow_ffn(net.block(layer, *candidate), 24, generator=torch.Generator().manual_seed(layer))
    grown = net.sample(random.Random(0))
    assert net.ffn_dim(0, *candidate) == 24
    after = net(ids, attention_mask=mask, arch=elmlib.Architecture.uniform(3, *candidate, 24, 4)).last_hidden_state
    assert torch.allclose(before, after, atol=1e-6)
    assert all(l.ffn_dim == 24 for l in grown.layers if (l.block, l.sharing) == candidate)


def test_normal_init_changes_the_output_and_bad_sizes_are_refused():
    space = tiny_space()
    net = elmlib.Supernet(space, seed=0).eval()
    arch = elmlib.Architecture.uniform(3, "bert", "none", 8, 4)
    ids, mask = batch(space)
    before = net(ids, attention_mask=mask, arch=arch).last_hidden_state
    grow_ffn(net.block(0, "bert", "none"), 16, init="normal", generator=torch.Generator().manual_seed(0))
    after = net(ids, attention_mask=mask, arch=arch.replace_layer(0, ffn_dim=16)).last_hidden_state
    assert not torch.allclose(before, after, atol=1e-4)
    with pytest.raises(ValueError, match="new_dim=16 is not allowed; the FFN already has 16"):
        grow_ffn(net.block(0, "bert", "none"), 16)
    with pytest.raises(ValueError, match="init='copy' is not allowed"):
        grow_ffn(net.block(0, "bert", "none"), 24, init="copy")


def test_growth_keeps_parameters_and_optimizer_state_consistent():
    space = tiny_space()
    net = elmlib.Supernet(space, seed=0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    arch = elmlib.Architecture.uniform(3, "bert", "kv", 8, 4)
    ids, mask = batch(space)
    net(ids, attention_mask=mask, arch=arch).last_hidden_state.square().mean().backward()
    opt.step()
    block = net.block(1, "bert", "kv")
    weight = block.intermediate.dense.weight
    old_avg = opt.state[weight]["exp_avg"].clone()
    grow_ffn(block, 16, optimizer=opt, generator=torch.Generator().manual_seed(0))
    assert any(p is weight for p in opt.param_groups[0]["params"])  # same Parameter object
    state = opt.state[weight]
    assert state["exp_avg"].shape == weight.shape == (16, 32)
    assert torch.equal(state["exp_avg"][:8], old_avg) and state["exp_avg"][8:].abs().max() == 0
    assert opt.state[block.output.dense.weight]["exp_avg_sq"].shape == (32, 16)
    opt.zero_grad()
    arch = arch.replace_layer(1, ffn_dim=16)
    net(ids, attention_mask=mask, arch=arch).last_hidden_state.square().mean().backward()
    opt.step()  # shapes agree, so the step runs
    model = net.extract(arch)
    assert space.num_params(arch) == sum(p.numel() for p in model.parameters())
