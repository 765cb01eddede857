"""The FlexiBERT design space (Tuli et al., JAIR 2023) and its benchmark (Serianni & Kalita, ACL 2023):
``benchmark`` parses and validates architectures and records, ``model`` builds any architecture at
initialisation with BERT-style attribute names, for the zero-cost proxies of ``elmlib.extensions.proxies``.

    from elmlib.extensions.flexibert import load_benchmark, build_model
    entry = load_benchmark()[0]                      # packaged dev file, 300 records
    model = build_model(entry.arch, seed=0)          # nn.Module, weights from torch.Generator(seed)
"""
from elmlib.extensions.flexibert.benchmark import (
    BenchmarkEntry, FlexiArchitecture, LayerSpec, benchmark_entries, load_benchmark, parse_record,
)
from elmlib.extensions.flexibert.model import (
    FlexiBertModel, LinearTransform, SelfAttention, SeparableConv, build_model, dct_matrix, init_weights,
)

__all__ = ["BenchmarkEntry", "FlexiArchitecture", "FlexiBertModel", "LayerSpec", "LinearTransform", "SelfAttention",
           "SeparableConv", "benchmark_entries", "build_model", "dct_matrix", "init_weights", "load_benchmark",
           "parse_record"]
