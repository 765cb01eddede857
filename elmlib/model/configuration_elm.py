"""Configuration of a standalone ELM encoder (one fixed architecture of the search space).

This file, ``blocks.py`` and ``modeling_elm.py`` are self-contained (they import only torch,
transformers and each other, relatively): ``save_pretrained`` copies them into the model folder, so an
exported model also loads with ``trust_remote_code=True`` on a machine without elmlib.

    config = ElmConfig(hidden_size=528, inner_size=132, layers=[{"block": "bert", "sharing": "qv",
                       "ffn_dim": 528, "heads": 12}] * 12)
    model = ElmModel(config)
"""
from __future__ import annotations

from transformers import PretrainedConfig

BLOCK_TYPES = ("bert", "mobilebert")
SHARINGS = ("none", "qv", "kv")
NORMS = ("layer_norm", "no_norm")
POOLINGS = ("cls", "mean")


class ElmConfig(PretrainedConfig):
    """Widths shared by every layer plus one ``{"block", "sharing", "ffn_dim", "heads"}`` dict per layer.

    Embeddings are factorized as in ALBERT/MobileBERT: word, position and token-type tables of
    ``embedding_size`` columns, one LayerNorm, then a linear projection to ``hidden_size``.
    MobileBERT blocks work at ``inner_size`` inside the bottleneck (MobileBERT, Sun et al. 2020).
    """

    model_type = "elm"

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 128,
        hidden_size: int = 528,
        inner_size: int = 132,
        layers: list[dict] | None = None,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        mobilebert_num_ffn: int = 1,
        mobilebert_norm: str = "layer_norm",
        classifier_dropout: float | None = None,
        classifier_pooling: str = "cls",
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        is_causal: bool = False,
        **kwargs,
    ):
        if layers is None:
            layers = [{"block": "bert", "sharing": "none", "ffn_dim": 4 * hidden_size, "heads": 12}] * 12
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.inner_size = inner_size
        self.layers = [dict(layer) for layer in layers]
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.mobilebert_num_ffn = mobilebert_num_ffn
        self.mobilebert_norm = mobilebert_norm
        self.classifier_dropout = classifier_dropout
        # "cls": BERT's first-token pooling; "mean": the mean over non-padding tokens (Sentence-BERT, the
        # packaged teacher's pooling), which short CPU schedules learn from (CLS barely sees the input at init).
        self.classifier_pooling = classifier_pooling
        # Causal (left-to-right) self-attention, for ElmForCausalLM (paper Sec. V, causal-LM transfer).
        self.is_causal = bool(is_causal)
        # Names other transformers utilities look for.
        self.num_hidden_layers = len(self.layers)
        self.num_attention_heads = max(int(layer["heads"]) for layer in self.layers)
        # The masked-LM decoder reuses the word-embedding table (ALBERT/BERT practice).
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self._check()

    def _check(self) -> None:
        if self.classifier_pooling not in POOLINGS:
            raise ValueError(f"classifier_pooling={self.classifier_pooling!r} is not allowed; expected one of "
                             f"{POOLINGS}")
        if self.mobilebert_norm not in NORMS:
            raise ValueError(f"mobilebert_norm={self.mobilebert_norm!r} is not allowed; expected one of {NORMS}")
        if self.mobilebert_num_ffn < 1:
            raise ValueError(f"mobilebert_num_ffn={self.mobilebert_num_ffn} is not allowed; expected >= 1")
        for i, layer in enumerate(self.layers):
            missing = {"block", "sharing", "ffn_dim", "heads"} - set(layer)
            if missing:
                raise ValueError(f"layer {i}: missing field(s) {sorted(missing)}")
            if layer["block"] not in BLOCK_TYPES:
                raise ValueError(f"layer {i}: block={layer['block']!r} is not allowed; expected one of {BLOCK_TYPES}")
            if layer["sharing"] not in SHARINGS:
                raise ValueError(f"layer {i}: sharing={layer['sharing']!r} is not allowed; expected one of {SHARINGS}")
            width = self.hidden_size if layer["block"] == "bert" else self.inner_size
            if int(layer["heads"]) < 1 or width % int(layer["heads"]):
                raise ValueError(f"layer {i}: heads={layer['heads']} does not divide the {layer['block']} "
                                 f"attention width {width}")
            if int(layer["ffn_dim"]) < 1:
                raise ValueError(f"layer {i}: ffn_dim={layer['ffn_dim']} is not allowed; expected >= 1")
