import json

import pytest

from elmlib.nas.evolution import EvolutionarySearch, EvolutionSettings
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice
from helpers import tiny_space

SPACE = tiny_space(num_layers=6)


def decode(genome):
    return Architecture(tuple(LayerChoice(*CANDIDATES[g], 16, 4) for g in genome))


def score(arch):
    """A known landscape: BERT blocks with sharing 'none' score best; deterministic."""
    return sum((l.block == "bert") + 0.5 * (l.sharing == "none") for l in arch.layers) / len(arch)


def make(budget, state_path=None, calls=None, **settings):
    def counted(arch):
        if calls is not None:
            calls.append(arch.to_json())
        return score(arch)
    return EvolutionarySearch(6, 6, decode, SPACE.num_params, budget, counted, seed=0,
                              settings=EvolutionSettings(**{"population": 12, "generations": 6, "parents": 4,
                                                            **settings}), state_path=state_path)


def test_finds_the_best_architecture_and_never_evaluates_twice_or_over_budget():
    calls = []
    search = make(budget=1e12, calls=calls, generations=20)
    search.run()
    assert len(calls) == len(set(calls)) == len(search.evaluated)
    assert search.best().score == pytest.approx(1.5)
    budget = SPACE.num_params(decode((1,) * 6))  # all BERT with Q=V sharing: the unshared best is over it
    calls = []
    search = make(budget=budget, calls=calls)
    search.run()
    assert all(SPACE.num_params(Architecture.from_json(c)) <= budget for c in calls)
    assert search.rejected_over_budget > 0
    assert search.best().score < 1.5


def test_evolution_improves_on_random_search():
    search = make(budget=1e12)
    search.step()
    first = search.best().score
    search.run()
    assert search.best().score > first


def test_same_seed_same_history_and_resume_equals_uninterrupted(tmp_path):
    full = make(1e12)
    full.run()
    part = make(1e12, state_path=tmp_path / "state.json")
    for _ in range(3):
        part.step()
    resumed = make(1e12, state_path=tmp_path / "state.json")  # a new process picking up the file
    assert resumed.generation == 3
    resumed.run()
    key = lambda h: [(e.genome, e.score, e.generation) for e in h]
    assert key(resumed.history()) == key(full.history())


def test_pareto_front_is_non_dominated():
    search = make(budget=1e12)
    search.run()
    front = search.pareto_front()
    for e in front:
        assert not any(o.params <= e.params and o.score > e.score for o in search.evaluated.values())
    assert [e.params for e in front] == sorted(e.params for e in front)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no architecture within the budget"):
        make(budget=10, max_tries=50).step()
    with pytest.raises(ValueError, match=r"EvolutionSettings.mutation_prob=1.5"):
        EvolutionSettings(mutation_prob=1.5)
    bad = tmp_path / "state.json"
    bad.write_text(json.dumps({"seed": 0}))
    with pytest.raises(ValueError, match="is corrupt, edited or from another search"):
        make(1e12, state_path=bad)


def test_proxy_assisted_search_evaluates_only_the_proxys_best_proposals():
    calls = []
    proxy_calls = []

    def proxy(arch):  # a proxy that agrees with the score
        proxy_calls.append(arch)
        return score(arch)

    search = make(budget=1e12, calls=calls, proxy_fraction=0.25)
    search.proxy = proxy
    search.run()
    assert len(calls) <= 12 * 6 and search.proxy_ranked == len(proxy_calls) >= 4 * len(calls) * 0.9
    plain = make(budget=1e12)
    plain.run()
    assert search.best().score >= plain.best().score
    with pytest.raises(ValueError, match="proxy_fraction=0"):
        EvolutionSettings(proxy_fraction=0)
