"""Standalone Hugging Face models of a found architecture (paper Sec. III-A, Fig. 5): the encoder,
masked-LM, causal-LM, sequence-classification and question-answering heads.

Embeddings are factorized (ALBERT); each layer is one of the six blocks of ``blocks.py``. Self-contained
(torch + transformers only, relative imports between the model files): ``save_pretrained`` copies this
file and the files it imports (``blocks.py``, ``configuration_elm.py``) next to the weights.

    model = ElmModel(config)                      # config: ElmConfig
    out = model(input_ids, attention_mask=mask)   # out.last_hidden_state: (B, N, hidden)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import (
    CausalLMOutputWithPast,
    MaskedLMOutput,
    ModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
)

from .blocks import Holder, NoNorm, build_block
from .configuration_elm import ElmConfig


class ElmEmbeddings(nn.Module):
    """Factorized embeddings (ALBERT, Lan et al. 2020): tables at ``embedding_size``, then a projection."""

    def __init__(self, config: ElmConfig):
        super().__init__()
        e = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e)
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.projection = nn.Linear(e, config.hidden_size)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings)[None], persistent=False)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        length = input_ids.shape[1]
        if length > self.position_ids.shape[1]:
            raise ValueError(f"sequence length {length} exceeds max_position_embeddings={self.position_ids.shape[1]}")
        if position_ids is None:
            position_ids = self.position_ids[:, :length]
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        x = x + (self.token_type_embeddings(token_type_ids) if token_type_ids is not None
                 else self.token_type_embeddings.weight[0])
        return self.projection(self.dropout(self.LayerNorm(x)))


@dataclass
class ElmModelOutput(ModelOutput):
    """Encoder output; the optional tuples hold one entry per layer (``hidden_states``: embeddings too)."""

    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    head_outputs: tuple[torch.Tensor, ...] | None = None
    ffn_hidden_states: tuple[torch.Tensor, ...] | None = None
    cache: Cache | None = None


# transformers 5.24 renamed the key/value cache of model inputs and outputs from ``past_key_values`` to
# ``cache`` (generate() passes and reads the new name); both names are accepted here, and outputs carry
# the name of the installed version.
CACHE_NAME = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def output_cache(output) -> Cache | None:
    """The key/value cache of a causal-LM output, under either transformers naming."""
    return output.get(CACHE_NAME)


def _either_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the key/value cache once: cache or past_key_values, not both")
    return cache if cache is not None else past_key_values


def sdpa_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, N) 1/0 padding mask -> (B, 1, 1, N) boolean mask (True = attend); None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def causal_positions(attention_mask: torch.Tensor | None, past: int, length: int, device=None) -> torch.Tensor:
    """Position ids of the ``length`` new tokens after ``past`` cached ones; with (left) padding in the
    (B, past + length) ``attention_mask``, positions count real tokens only, so a padded prompt gets
    the same positions as an unpadded one."""
    if attention_mask is None or bool(attention_mask.all()):
        return torch.arange(past, past + length, device=device)[None]
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]


def causal_mask(attention_mask: torch.Tensor | None, past: int, length: int, device=None):
    """(mask, is_causal) for ``length`` queries after ``past`` cached keys: query i sees keys <= past + i.

    Without padding the fused kernel's own causal mask is used (``is_causal``; none at all for one new
    token). With padding, a boolean (B, 1, length, past + length) mask; every query may also see its own
    key, so a padding query never has an empty row (whose softmax would be NaN and leak into the cache)."""
    padded = attention_mask is not None and not bool(attention_mask.all())
    if not padded:
        if length == 1:
            return None, False
        if past == 0:
            return None, True
    total = past + length
    query_pos = torch.arange(past, total, device=device)[:, None]
    key_pos = torch.arange(total, device=device)[None, :]
    allowed = (key_pos <= query_pos)[None, None]
    if padded:
        if attention_mask.shape[-1] != total:
            raise ValueError(f"attention_mask has {attention_mask.shape[-1]} columns; expected past + new = {total}")
        allowed = (allowed & attention_mask.bool()[:, None, None, :]) | (key_pos == query_pos)[None, None]
    return allowed, False


def run_layers(x, blocks, settings, mask, output_hidden_states=False, output_attentions=False,
               output_head_outputs=False, output_ffn_hidden=False, cache: Cache | None = None,
               is_causal: bool = False) -> ElmModelOutput:
    """Run ``blocks`` in order; ``settings`` gives each block's (heads, ffn_dim). Shared by model and supernet.

    ``cache`` (causal models) holds one key/value slot per block, in order."""
    hidden, attn, heads_out, ffn = ([x] if output_hidden_states else None), [], [], []
    for i, (block, (heads, ffn_dim)) in enumerate(zip(blocks, settings)):
        out = block(x, mask, heads, ffn_dim, output_attentions, output_head_outputs, output_ffn_hidden,
                    cache, i, is_causal)
        x = out.hidden
        if output_hidden_states:
            hidden.append(x)
        attn.append(out.attn_probs)
        heads_out.append(out.head_outputs)
        ffn.append(out.ffn_hidden)
    return ElmModelOutput(
        last_hidden_state=x,
        hidden_states=tuple(hidden) if output_hidden_states else None,
        attentions=tuple(attn) if output_attentions else None,
        head_outputs=tuple(heads_out) if output_head_outputs else None,
        ffn_hidden_states=tuple(ffn) if output_ffn_hidden else None,
        cache=cache,
    )


class ElmPreTrainedModel(PreTrainedModel):
    config_class = ElmConfig
    base_model_prefix = "elm"
    _no_split_modules = ["BertBlock", "MobileBertBlock"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, NoNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, ElmEmbeddings):
            module.position_ids.copy_(torch.arange(module.position_ids.shape[1])[None])


class ElmModel(ElmPreTrainedModel):
    """The encoder: factorized embeddings + one block per layer of ``config.layers``. No pooler.

    With ``config.is_causal`` (set by ``ElmForCausalLM``) attention is left-to-right and a key/value
    cache (``cache``, or ``past_key_values`` before transformers 5.24: a transformers ``Cache``) may carry
    earlier tokens."""

    def __init__(self, config: ElmConfig):
        super().__init__(config)
        self.embeddings = ElmEmbeddings(config)
        self.encoder = Holder(layer=nn.ModuleList(
            build_block(config, l["block"], l["sharing"], int(l["ffn_dim"]), int(l["heads"])) for l in config.layers
        ))
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, output_head_outputs=False,
                output_ffn_hidden=False, return_dict=True, cache: Cache | None = None,
                use_cache: bool | None = None, past_key_values: Cache | None = None, **kwargs) -> ElmModelOutput:
        cache = _either_cache(cache, past_key_values)
        settings = [(int(l["heads"]), None) for l in self.config.layers]
        if not getattr(self.config, "is_causal", False):
            if cache is not None or use_cache:
                raise ValueError("a key/value cache (cache, use_cache) needs a causal model (config.is_causal=True)")
            x = self.embeddings(input_ids, token_type_ids, position_ids)
            out = run_layers(x, self.encoder.layer, settings, sdpa_mask(attention_mask), output_hidden_states,
                             output_attentions, output_head_outputs, output_ffn_hidden)
            return out if return_dict else out.to_tuple()
        if use_cache and cache is None:
            cache = DynamicCache()
        past = cache.get_seq_length() if cache is not None else 0
        length = input_ids.shape[1]
        if past + length > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {past + length} (cached {past} + new {length}) exceeds "
                             f"max_position_embeddings={self.config.max_position_embeddings}")
        if position_ids is None:
            position_ids = causal_positions(attention_mask, past, length, input_ids.device)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask, is_causal = causal_mask(attention_mask, past, length, input_ids.device)
        out = run_layers(x, self.encoder.layer, settings, mask, output_hidden_states, output_attentions,
                         output_head_outputs, output_ffn_hidden, cache, is_causal)
        return out if return_dict else out.to_tuple()


class ElmMLMHead(nn.Module):
    """ALBERT-style head: hidden -> embedding_size, then the (tied) word-embedding decoder."""

    def __init__(self, config: ElmConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)

    def forward(self, x):
        return self.decoder(self.LayerNorm(self.act(self.dense(x))))


class _ElmWithLMHead(ElmPreTrainedModel):
    """The encoder plus the LM head whose decoder is tied to the word embeddings (masked and causal LMs
    share it, so a masked-LM checkpoint loads into the causal model directly)."""

    _tied_weights_keys = {"predictions.decoder.weight": "elm.embeddings.word_embeddings.weight"}

    def __init__(self, config: ElmConfig):
        super().__init__(config)
        self.elm = ElmModel(config)
        self.predictions = ElmMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.predictions.decoder

    def set_output_embeddings(self, value):
        self.predictions.decoder = value


class ElmForMaskedLM(_ElmWithLMHead):
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        out = self.elm(input_ids, attention_mask, token_type_ids, **kwargs)
        logits = self.predictions(out.last_hidden_state)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


class ElmForCausalLM(_ElmWithLMHead, GenerationMixin):
    """A causal LM of any architecture of the space (paper Sec. V, causal-LM transfer).

    Left-to-right attention with a key/value cache (``generate()`` works as with any transformers
    causal LM) and the masked-LM head's structure: hidden -> embedding_size -> the decoder tied to the
    word embeddings, so the factorized embedding table is the output table too. The head and encoder
    keep ``ElmForMaskedLM``'s names: a masked-LM checkpoint's weights load into this model directly.
    """

    def __init__(self, config: ElmConfig):
        config.is_causal = True
        super().__init__(config)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: Cache | None = None,
                use_cache: bool | None = None, labels=None, logits_to_keep: int = 0,
                output_hidden_states: bool = False, output_attentions: bool = False,
                past_key_values: Cache | None = None, **kwargs):
        """``labels`` are the input ids themselves (shifted inside, -100 = ignored), as in GPT-2;
        ``logits_to_keep`` > 0 computes logits of the last positions only (generation)."""
        out = self.elm(input_ids, attention_mask, position_ids=position_ids, cache=_either_cache(cache, past_key_values),
                       use_cache=bool(use_cache), output_hidden_states=output_hidden_states,
                       output_attentions=output_attentions)
        hidden = out.last_hidden_state
        logits = self.predictions(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                      attentions=out.attentions, **{CACHE_NAME: out.cache if use_cache else None})


class ElmClassificationHead(nn.Module):
    """Pooling ([CLS], or the mean over non-padding tokens with ``classifier_pooling="mean"``) -> dropout
    -> dense -> tanh -> dropout -> linear (the pooler lives in the head, so the encoder's parameter
    count stays head-free)."""

    def __init__(self, config: ElmConfig):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.pooling = getattr(config, "classifier_pooling", "cls")
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(p)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooling == "mean":
            mask = (torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None
                    else attention_mask).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            pooled = hidden[:, 0]
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))


class ElmForSequenceClassification(ElmPreTrainedModel):
    def __init__(self, config: ElmConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.elm = ElmModel(config)
        self.classifier = ElmClassificationHead(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        out = self.elm(input_ids, attention_mask, token_type_ids, **kwargs)
        logits = self.classifier(out.last_hidden_state, attention_mask)
        loss = None
        if labels is not None:
            if self.num_labels == 1:  # regression (STS-B style)
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


class ElmForQuestionAnswering(ElmPreTrainedModel):
    """Extractive QA: start/end logits from a linear layer over every token (SQuAD)."""

    def __init__(self, config: ElmConfig):
        super().__init__(config)
        self.elm = ElmModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, **kwargs):
        out = self.elm(input_ids, attention_mask, token_type_ids, **kwargs)
        start, end = self.qa_outputs(out.last_hidden_state).unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            n = start.shape[1]  # positions outside the sequence are ignored, as in BERT's QA head
            loss = (F.cross_entropy(start, start_positions.clamp(0, n), ignore_index=n)
                    + F.cross_entropy(end, end_positions.clamp(0, n), ignore_index=n)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end,
                                            hidden_states=out.hidden_states, attentions=out.attentions)
