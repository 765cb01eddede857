"""elmlib: reference implementation of ELM (Elastic Architecture Search for Efficient Language Models,
Shang Wang, ICME 2025, arXiv 2510.27037).

    import random, elmlib
    space = elmlib.SearchSpace.preset("small")
    arch = space.sample(random.Random(0))
    net = elmlib.Supernet(space)
    model = net.extract(arch)        # a standalone transformers PreTrainedModel
"""
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from elmlib.model.blocks import BertBlock, MobileBertBlock
from elmlib.model.configuration_elm import ElmConfig
from elmlib.nas.growth import grow_ffn
from elmlib.model.modeling_elm import (
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForQuestionAnswering,
    ElmForSequenceClassification,
    ElmModel,
)
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice, SearchSpace
from elmlib.nas.supernet import Supernet

__version__ = "0.1.0"

# `import elmlib` makes exported folders load through transformers' Auto classes; saving also
# copies configuration_elm.py / blocks.py / modeling_elm.py into the folder (auto_map), so the same folder
# loads with trust_remote_code=True where elmlib is not installed.
AutoConfig.register("elm", ElmConfig, exist_ok=True)
ElmConfig.register_for_auto_class()
for _auto, _model in ((AutoModel, ElmModel), (AutoModelForMaskedLM, ElmForMaskedLM),
                      (AutoModelForCausalLM, ElmForCausalLM),
                      (AutoModelForSequenceClassification, ElmForSequenceClassification),
                      (AutoModelForQuestionAnswering, ElmForQuestionAnswering)):
    _auto.register(ElmConfig, _model, exist_ok=True)
    _model.register_for_auto_class(_auto.__name__)

__all__ = [
    "Architecture", "BertBlock", "CANDIDATES", "ElmConfig", "ElmForCausalLM", "ElmForMaskedLM", "ElmForQuestionAnswering",
    "ElmForSequenceClassification", "ElmModel", "LayerChoice", "MobileBertBlock", "SearchSpace", "Supernet",
    "grow_ffn",
]
