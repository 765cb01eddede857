"""Evolutionary architecture search under a parameter budget (paper Algorithm 2, step 3; SPOS's
evolution, Guo et al. ECCV 2020).

A genome picks one candidate block per layer; ``decode`` turns it into an `Architecture` (in ELM
the FFN dimension of a block is the one PCA-guided growth gave it). Candidates over the budget are
never evaluated, and no architecture is evaluated twice. The state after every generation can be
saved and resumed, giving the same result as an uninterrupted run.

    search = EvolutionarySearch(num_layers=12, num_choices=6, decode=decode, params=space.num_params,
                                budget=15.7e6, score=score_on_search_split, seed=0)
    history = search.run()          # one row per evaluated architecture
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from elmlib.errors import UserError
from elmlib.io.settings import AT_LEAST_1, OPEN_UNIT, UNIT, check
from elmlib.io.files import write_json
from elmlib.nas.space import Architecture

Genome = tuple[int, ...]


_EVOLUTION_RANGES = (
    (("population", "generations", "parents", "max_tries"), AT_LEAST_1),
    (("proxy_fraction",), OPEN_UNIT),
    (("crossover_prob", "mutation_prob"), UNIT),
)


@dataclass
class EvolutionSettings:
    population: int = 50        # paper
    generations: int = 40       # paper
    crossover_prob: float = 1.0  # paper
    mutation_prob: float = 0.1  # paper, per layer
    parents: int = 10           # top-k kept as parents (SPOS)
    max_tries: int = 1000       # draws allowed to find one new, within-budget candidate
    proxy_fraction: float = 1.0  # proxy-assisted: evaluate only this best fraction of proposals

    def __post_init__(self):
        check(self, {}, _EVOLUTION_RANGES, owner="EvolutionSettings")


@dataclass
class Evaluated:
    genome: Genome
    arch: Architecture
    params: int
    score: float
    generation: int


@dataclass
class EvolutionarySearch:
    num_layers: int
    num_choices: int
    decode: Callable[[Genome], Architecture]
    params: Callable[[Architecture], int]
    budget: float
    score: Callable[[Architecture], float]   # higher is better
    seed: int = 0
    settings: EvolutionSettings = field(default_factory=EvolutionSettings)
    state_path: str | Path | None = None
    proxy: Callable[[Architecture], float] | None = None  # cheap ranking of proposals (higher is better)

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.evaluated: dict[Genome, Evaluated] = {}
        self.population: list[Genome] = []
        self.generation = 0
        self.rejected_over_budget = 0
        self.proxy_ranked = 0
        if self.state_path and Path(self.state_path).exists():
            self._load(Path(self.state_path))

    # --- genome operators ------------------------------------------------------------------------
    def random_genome(self) -> Genome:
        return tuple(self.rng.randrange(self.num_choices) for _ in range(self.num_layers))

    def mutate(self, genome: Genome) -> Genome:
        p = self.settings.mutation_prob
        return tuple(self.rng.randrange(self.num_choices) if self.rng.random() < p else g for g in genome)

    def crossover(self, a: Genome, b: Genome) -> Genome:
        if self.rng.random() >= self.settings.crossover_prob:
            return a
        return tuple(x if self.rng.random() < 0.5 else y for x, y in zip(a, b))

    def _new_candidate(self, make: Callable[[], Genome], taken: set[Genome]) -> Genome | None:
        """A genome not evaluated before, not already in this generation, and within the budget."""
        for _ in range(self.settings.max_tries):
            genome = make()
            if genome in self.evaluated or genome in taken:
                continue
            if self.params(self.decode(genome)) > self.budget:
                self.rejected_over_budget += 1
                continue
            return genome
        return None

    # --- the loop --------------------------------------------------------------------------------
    def _evaluate(self, genomes: list[Genome]) -> None:
        for genome in genomes:
            arch = self.decode(genome)
            score = float(self.score(arch))  # NaN (e.g. Pearson of constant predictions) ranks last
            self.evaluated[genome] = Evaluated(genome, arch, self.params(arch),
                                               -math.inf if math.isnan(score) else score, self.generation)

    def top(self, k: int) -> list[Evaluated]:
        return sorted(self.evaluated.values(), key=lambda e: (-e.score, e.params, e.genome))[:k]

    def step(self) -> None:
        """One generation: the first draws the population at random; later ones breed from the top-k."""
        size, taken = self.settings.population, set()
        if self.generation == 0:
            makers = [self.random_genome] * size
        else:
            parents = [e.genome for e in self.top(self.settings.parents)]
            half = size // 2
            makers = ([lambda: self.mutate(self.rng.choice(parents))] * half
                      + [lambda: self.crossover(self.rng.choice(parents), self.rng.choice(parents))] * (size - half))
        if self.proxy is not None and self.settings.proxy_fraction < 1:
            # Proxy-assisted: propose 1/fraction times more, keep the best by the proxy.
            extra = round(len(makers) / self.settings.proxy_fraction)
            makers = [makers[i % len(makers)] for i in range(extra)]
        children = []
        for make in makers:
            genome = self._new_candidate(make, taken)
            if genome is None:  # operators exhausted: fill with fresh random genomes
                genome = self._new_candidate(self.random_genome, taken)
            if genome is not None:
                children.append(genome)
                taken.add(genome)
        if len(children) > size:
            ranked = sorted(children, key=lambda g: (-self.proxy(self.decode(g)), g))
            self.proxy_ranked += len(children)
            children = ranked[:size]
        if not children and self.generation == 0:
            raise ValueError(f"no architecture within the budget {self.budget:.4g} was found in "
                             f"{self.settings.max_tries} draws; raise the budget")
        self._evaluate(children)
        self.population = [e.genome for e in self.top(size)]
        self.generation += 1
        if self.state_path:
            self._save(Path(self.state_path))

    def run(self, on_generation: Callable[["EvolutionarySearch"], None] | None = None) -> list[Evaluated]:
        while self.generation < self.settings.generations:
            self.step()
            if on_generation:
                on_generation(self)
        return self.history()

    def history(self) -> list[Evaluated]:
        return sorted(self.evaluated.values(), key=lambda e: (e.generation, e.genome))

    def best(self) -> Evaluated:
        return self.top(1)[0]

    def pareto_front(self) -> list[Evaluated]:
        """Evaluated architectures no other beats on both fewer parameters and a higher score."""
        front, best = [], float("-inf")
        for e in sorted(self.evaluated.values(), key=lambda e: (e.params, -e.score)):
            if e.score > best:
                front.append(e)
                best = e.score
        return front

    # --- resumable state -------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        version, internal, gauss = self.rng.getstate()
        write_json({
            "seed": self.seed, "generation": self.generation, "rejected_over_budget": self.rejected_over_budget,
            "proxy_ranked": self.proxy_ranked,
            "rng": [version, list(internal), gauss], "population": [list(g) for g in self.population],
            "evaluated": [{"genome": list(e.genome), "score": e.score, "params": e.params, "generation": e.generation}
                          for e in self.evaluated.values()],
        }, path)

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            if state["seed"] != self.seed:
                raise ValueError(f"seed {state['seed']} in the state file differs from seed={self.seed}")
            version, internal, gauss = state["rng"]
            self.rng.setstate((version, tuple(internal), gauss))
            self.generation, self.rejected_over_budget = state["generation"], state["rejected_over_budget"]
            self.proxy_ranked = state.get("proxy_ranked", 0)
            for row in state["evaluated"]:
                genome = self._checked_genome(row["genome"])
                arch = self.decode(genome)
                self.evaluated[genome] = Evaluated(genome, arch, self._checked_params(arch, row["params"]),
                                                   self._checked_score(row["score"]), int(row["generation"]))
            self.population = [self._checked_genome(g) for g in state["population"]]
            if any(g not in self.evaluated for g in self.population):
                raise ValueError("the population holds genomes that were never evaluated")
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
            raise UserError(f"evolution state {path} is corrupt, edited or from another search ({err}); delete it "
                            "to restart the search stage") from None

    # --- checks of a loaded state: nothing a search could not have written is accepted ------------
    def _checked_genome(self, genes) -> Genome:
        genome = tuple(genes)
        if len(genome) != self.num_layers or not all(
                isinstance(g, int) and not isinstance(g, bool) and 0 <= g < self.num_choices for g in genome):
            raise ValueError(f"genome {list(genome)} is not {self.num_layers} choices in [0, {self.num_choices})")
        return genome

    def _checked_params(self, arch: Architecture, stored) -> int:
        params = self.params(arch)
        if stored != params or params > self.budget:
            raise ValueError(f"an architecture's stored parameter count {stored} differs from its count {params} "
                             f"or exceeds the budget {self.budget:.4g}")
        return params

    @staticmethod
    def _checked_score(score) -> float:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score) or score == math.inf:
            raise ValueError(f"score {score!r} is not a finite number (or -inf, an unscoreable architecture)")
        return float(score)
