"""What a model's head does with its logits and labels, so that every loss trains on the model's own targets.

Head kinds (:func:`head_kind`):

==================  ========================================================================================
kind                what the losses are computed on
==================  ========================================================================================
``causal_lm``       position ``t`` predicts label ``t + 1``: ``logits[..., :-1, :]`` with ``labels[..., 1:]``,
                    as transformers' ``ForCausalLMLoss`` does; ``num_items_in_batch`` counts ``labels[..., 1:]``.
``seq2seq``         decoder logits with ``labels`` as they are (the model feeds right-shifted labels to its
                    decoder).
``masked_lm``       logits with ``labels`` as they are (``-100`` on the unmasked tokens).
``aligned_lm``      logits with ``labels`` as they are: the LM heads that transformers files as causal but whose
                    own loss pairs position ``t`` with label ``t`` (XLM, Flaubert, XLNet, CPM-Ant, ProphetNet); the caller
                    aligns the labels, as for these models' own loss.
``ctc``             the loss's CTC form over each utterance (the registry's ``LossSpec.ctc``: CTC for ``ce``,
                    Tamed CTC for ``tce``); losses without one do not apply.
``classification``  logits ``(..., C)`` with labels ``(...)``: sequence, token, multiple-choice, image, audio.
==================  ========================================================================================

Detection rule, first match wins ("the class" is the model's class or any of its base classes). A ProphetNet model
with ``ngram > 1`` is refused first: its own loss spans n-gram streams that its ``logits`` do not carry.

1. ``ctc``: the class is a ``*ForCTC`` or in transformers' CTC auto-mapping, or ``model.loss_type == "ForCTC"``.
2. ``seq2seq``: ``config.is_encoder_decoder`` and the class is in a seq2seq LM auto-mapping or is a
   ``*ForConditionalGeneration``.
3. ``aligned_lm``: the class is one of :data:`ALIGNED_LM_HEADS`.
4. ``causal_lm``: the class is a ``*ForCausalLM`` / ``*LMHeadModel`` or in the causal-LM, image-text-to-text or
   multimodal-LM auto-mappings, or ``model.loss_type`` routes to transformers' ``ForCausalLMLoss`` (set
   ``model.loss_type = "ForCausalLM"`` to mark a custom model), or the model's ``_loss_function`` is that loss.
5. ``masked_lm``: the class is a ``*ForMaskedLM`` or in the masked-LM auto-mapping, or ``loss_type`` routes to
   ``ForMaskedLMLoss``.
6. ``classification``: everything else.

Any other model whose logits and labels do not line up is refused with a ``ValueError`` naming the model class and
both shapes: nothing is broadcast or trained on a guess.

Wrappers are looked through (:func:`unwrap`): ``DistributedDataParallel`` / ``DataParallel`` (``.module``) and PEFT
models (``get_base_model()``), so a LoRA adapter on a causal LM trains as the causal LM it adapts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import LOSSES, get_loss_spec

__all__ = [
    "ALIGNED_LM_HEADS",
    "HEAD_KINDS",
    "Head",
    "align",
    "check_loss_type",
    "ctc_input_lengths",
    "ctc_loss",
    "ctc_loss_types",
    "decoder_input_ids",
    "describe_head",
    "head_kind",
    "is_language_model_output",
    "is_peft_model",
    "item_targets",
    "num_classes",
    "unwrap",
]

HEAD_KINDS = ("causal_lm", "seq2seq", "masked_lm", "aligned_lm", "ctc", "classification")
ALIGNED_LM_HEADS = frozenset(
    {
        "XLMWithLMHeadModel",
        "FlaubertWithLMHeadModel",
        "XLNetLMHeadModel",
        "CpmAntForCausalLM",
        "ProphetNetForCausalLM",
    }
)
"""LM heads in transformers' causal-LM auto-mapping whose own loss is cross-entropy of ``logits`` against ``labels``
position by position, without a shift (read in their ``forward``; all but CPM-Ant are also checked against their own
loss in the tests)."""
IGNORE_INDEX = -100


def ctc_loss_types() -> dict[str, str]:
    """The registered losses that apply to CTC heads, and what they are called there (``{"ce": "CTC", ...}``)."""
    return {name: spec.ctc.name for name, spec in LOSSES.items() if spec.ctc is not None}


def is_peft_model(model: Any) -> bool:
    """True for a PEFT wrapper (``peft.PeftModel`` and its task subclasses), without importing PEFT."""
    return any(cls.__module__.split(".")[0] == "peft" for cls in type(model).__mro__) and callable(
        getattr(model, "get_base_model", None)
    )


def unwrap(model: Any) -> Any:
    """The model under ``DistributedDataParallel`` / ``DataParallel`` (``.module``) and PEFT (``get_base_model()``)."""
    model = getattr(model, "module", model)
    if is_peft_model(model):
        model = model.get_base_model()
    return getattr(model, "module", model)


def _mapping_names(*attrs: str) -> frozenset[str]:
    from transformers.models.auto import modeling_auto

    names: set[str] = set()
    for attr in attrs:
        for value in getattr(modeling_auto, attr, {}).values():
            names.update([value] if isinstance(value, str) else value)
    return frozenset(names)


def _loss_function_of(model: Any) -> Any:
    """The loss function the model declares (``_loss_function`` or ``loss_type``), without the causal fallback."""
    from transformers.loss.loss_utils import LOSS_MAPPING

    explicit = getattr(model, "_loss_function", None)
    if explicit is not None:
        return explicit
    loss_type = getattr(model, "loss_type", None)
    if loss_type is None:
        loss_type = getattr(getattr(model, "config", None), "loss_type", None)
    return LOSS_MAPPING.get(loss_type) if isinstance(loss_type, str) else None


def head_kind(model: Any) -> str:
    """One of :data:`HEAD_KINDS` for ``model`` (see the module docstring for the rule)."""
    from transformers.loss.loss_utils import ForCausalLMLoss, ForMaskedLMLoss

    model = unwrap(model)
    names = {cls.__name__ for cls in type(model).__mro__}  # subclasses of a known head are that head
    config = getattr(model, "config", None)
    declared = _loss_function_of(model)

    def known(*mappings: str) -> bool:
        return not names.isdisjoint(_mapping_names(*mappings))

    def suffix(*endings: str) -> bool:
        return any(name.endswith(endings) for name in names)

    if (
        suffix("ForCTC")
        or known("MODEL_FOR_CTC_MAPPING_NAMES")
        or getattr(model, "loss_type", None) == "ForCTC"
    ):
        return "ctc"
    prophetnet_head = any(
        name.startswith("ProphetNet") and name.endswith(("ForCausalLM", "ForConditionalGeneration"))
        for name in names
    )
    if prophetnet_head and int(getattr(config, "ngram", 1)) > 1:
        raise ValueError(
            f"{type(model).__name__}: its own loss spans {config.ngram} n-gram prediction streams, and its `logits` "
            "carry only the first; no loss of this package can stand in for it (a model with ngram=1 is accepted)"
        )
    if getattr(config, "is_encoder_decoder", False) and (
        suffix("ForConditionalGeneration")
        or known("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES")
    ):
        return "seq2seq"
    if not names.isdisjoint(ALIGNED_LM_HEADS):
        return "aligned_lm"
    if (
        suffix("ForCausalLM", "LMHeadModel")
        or known(
            "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
            "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
            "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
        )
        or declared is ForCausalLMLoss
    ):
        return "causal_lm"
    if suffix("ForMaskedLM") or known("MODEL_FOR_MASKED_LM_MAPPING_NAMES") or declared is ForMaskedLMLoss:
        return "masked_lm"
    return "classification"


@dataclass(frozen=True)
class Head:
    """A model's head kind, its class name (for messages) and, for CTC, the settings of the model's own loss."""

    kind: str
    model_name: str
    blank: int = 0
    ctc_reduction: str = "mean"
    ctc_zero_infinity: bool = False


def describe_head(model: Any) -> Head:
    """The :class:`Head` of ``model``."""
    inner = unwrap(model)
    kind = head_kind(inner)
    name = type(inner).__name__
    if kind != "ctc":
        return Head(kind, name)
    config = getattr(inner, "config", None)
    blank = getattr(config, "pad_token_id", None)
    if blank is None:
        raise ValueError(f"{name}: a CTC head needs `config.pad_token_id`, its blank token; it is None")
    reduction = getattr(config, "ctc_loss_reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise ValueError(
            f"{name}: config.ctc_loss_reduction must be 'mean' or 'sum' to train, got {reduction!r}"
        )
    return Head(kind, name, int(blank), reduction, bool(getattr(config, "ctc_zero_infinity", False)))


def check_loss_type(head: Head, loss_type: str) -> None:
    """``ValueError`` when ``loss_type`` does not apply to the head (CTC heads take only the losses with a CTC form)."""
    if head.kind == "ctc" and get_loss_spec(loss_type).ctc is None:
        raise ValueError(
            f"loss_type={loss_type!r} does not apply to the CTC head of {head.model_name}: CTC has no per-frame "
            "target class (the loss sums over every alignment of the label sequence to the frames), so a loss "
            "defined per (logits, class) item has nothing to compare the frames with. Use "
            + " or ".join(f"{t!r} ({what})" for t, what in ctc_loss_types().items())
            + " (e.g. --loss_type ce)."
        )


def _shape(x: Any) -> tuple[int, ...] | str:
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def align(head: Head, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Logits ``(..., C)`` and labels ``(...)`` item for item, as the model itself pairs them.

    ``ValueError`` naming the model class and both shapes when they cannot line up.
    """
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        what = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"{head.model_name}: labels must be an integer tensor of class indices, got {what} (multi-label and "
            "regression targets are not classification labels)"
        )
    if not isinstance(logits, Tensor) or logits.dim() < 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"{head.model_name} ({head.kind} head): logits {_shape(logits)} and labels {_shape(labels)} do not "
            "line up; expected logits (..., C) and labels (...) with the same leading shape"
            + (
                " (for a causal LM, labels are the input ids: (batch, sequence))"
                if head.kind == "causal_lm"
                else ""
            )
        )
    if head.kind == "causal_lm":
        if labels.dim() < 1:
            raise ValueError(f"{head.model_name}: causal-LM labels need a sequence dimension, got a scalar")
        return logits[..., :-1, :], labels[..., 1:]
    return logits, labels


def item_targets(head: Head, labels: Tensor) -> Tensor:
    """A tensor whose entries other than ``-100`` are the items a micro-batch contributes to ``num_items_in_batch``.

    Causal LMs: ``labels[..., 1:]``; CTC: one item per utterance (``"mean"`` averages utterances); otherwise the
    labels themselves.
    """
    if head.kind == "causal_lm":
        return labels[..., 1:]
    if head.kind == "ctc":
        return torch.zeros(labels.shape[:1], dtype=torch.long, device=labels.device)
    return labels


def decoder_input_ids(model: Any, labels: Tensor) -> Tensor:
    """The decoder inputs an encoder-decoder model makes from ``labels`` when it gets no ``decoder_input_ids``: the
    labels shifted right, the decoder start token first, ``-100`` replaced by the pad token."""
    inner = unwrap(model)
    prepare = getattr(inner, "prepare_decoder_input_ids_from_labels", None)
    if prepare is not None:
        return prepare(labels=labels)
    config = getattr(inner, "config", None)
    start = getattr(config, "decoder_start_token_id", None)
    pad = getattr(config, "pad_token_id", None)
    if start is None or pad is None:
        raise ValueError(
            f"{type(inner).__name__}: cannot make decoder_input_ids from the labels (config.decoder_start_token_id "
            "or config.pad_token_id is None); put `decoder_input_ids` in the batch (DataCollatorForSeq2Seq(model=...))"
        )
    shifted = labels.new_full(labels.shape, int(pad))
    shifted[..., 1:] = labels[..., :-1]
    shifted[..., 0] = int(start)
    return shifted.masked_fill(shifted == IGNORE_INDEX, int(pad))


def ctc_input_lengths(model: Any, inputs: Mapping[str, Any]) -> Tensor | None:
    """Frames per utterance of a CTC model's logits from the batch's ``attention_mask``; ``None``: all frames."""
    mask = inputs.get("attention_mask")
    if mask is None:
        return None
    inner = unwrap(model)
    lengths_of = getattr(inner, "_get_feat_extract_output_lengths", None)
    if lengths_of is None:
        raise ValueError(
            f"{type(inner).__name__}: cannot tell the CTC frame lengths from `attention_mask` (the model has no "
            "`_get_feat_extract_output_lengths`); pad nothing, or train it with its own loss"
        )
    return lengths_of(mask.sum(-1)).to(torch.long)


def ctc_loss(
    head: Head,
    logits: Tensor,
    labels: Tensor,
    input_lengths: Tensor | None,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    per_utterance: bool = False,
) -> tuple[Tensor, int]:
    r"""Sum over the utterances of a CTC-form loss, and the number of utterances.

    Per utterance ``b`` with CTC negative log-likelihood :math:`\text{nll}_b` and :math:`L_b` target tokens (labels
    other than ``-100`` and the blank), the summed term is ``transform(nll_b) / max(L_b, 1)`` when the model's
    ``ctc_loss_reduction`` is ``"mean"`` and ``transform(nll_b)`` when it is ``"sum"`` (``transform``: the loss's
    :class:`~hf_squareloss.registry.CtcForm`, bound to its parameters; ``None`` is CTC itself);
    ``ctc_zero_infinity`` zeroes impossible alignments as in the model. With CTC the sum divided by the number of
    utterances is the model's own loss (``"mean"``), the sum itself is (``"sum"``). ``per_utterance``: return the
    ``(batch,)`` terms instead of their sum.
    """
    if logits.dim() != 3 or labels.dim() != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{head.model_name} (ctc head): logits {_shape(logits)} must be (batch, frames, vocab) and labels "
            f"{_shape(labels)} (batch, tokens)"
        )
    batch, frames, vocab = logits.shape
    targets_mask = (labels != IGNORE_INDEX) & (labels != head.blank)
    bad = targets_mask & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        raise ValueError(
            f"{head.model_name}: CTC labels must be in [0, {vocab - 1}] or -100, found {sorted(set(labels[bad].tolist()))[:10]}"
        )
    if input_lengths is None:
        input_lengths = torch.full((batch,), frames, dtype=torch.long, device=logits.device)
    target_lengths = targets_mask.sum(-1)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    with torch.backends.cudnn.flags(enabled=False):
        nll = F.ctc_loss(
            log_probs,
            labels.masked_select(targets_mask),
            input_lengths,
            target_lengths,
            blank=head.blank,
            reduction="none",
            zero_infinity=head.ctc_zero_infinity,
        )
    terms = nll if transform is None else transform(nll)
    if not head.ctc_zero_infinity:  # an impossible alignment stays infinite, as in the model's own loss
        terms = torch.where(torch.isinf(nll), nll, terms)
    if head.ctc_reduction == "mean":
        terms = terms / target_lengths.clamp_min(1).to(terms.dtype)
    return (terms if per_utterance else terms.sum()), batch


def num_classes(model: Any) -> int | None:
    """The number of classes of the head's logits from the config, or ``None`` when only the logits can tell."""
    inner = None if model is None else unwrap(model)
    if inner is None or "MultipleChoice" in type(inner).__name__:
        return None
    config = getattr(inner, "config", None)
    if head_kind(inner) == "classification":
        value = getattr(config, "num_labels", None)
    else:
        value = getattr(config, "vocab_size", None)
        if value is None and hasattr(config, "get_text_config"):
            value = getattr(config.get_text_config(), "vocab_size", None)
    return int(value) if value else None


def is_language_model_output(outputs: Any) -> bool:
    """True for transformers output classes of LM and CTC heads (whose labels need the model to be aligned)."""
    return any(part in type(outputs).__name__ for part in ("CausalLM", "Seq2SeqLM", "MaskedLM"))
