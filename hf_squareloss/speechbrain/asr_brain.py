"""Joint CTC-attention training (Kim, Hori & Watanabe, ICASSP 2017) with the decoder loss taken from the registry.

The model is SpeechBrain's: a convolutional front end and ``TransformerASR`` (encoder + autoregressive decoder), a
CTC head on the encoder and a linear output layer on the decoder. The training objective is

    ``ctc_weight * ctc_cost(log_softmax(ctc_lin(enc)), tokens) + (1 - ctc_weight) * seq_cost(seq_lin(dec), tokens_eos)``

where ``seq_cost`` is a :class:`hf_squareloss.speechbrain.LogitsLoss` on the decoder's **raw** logits (so that the
square loss, ``ce`` and ``tce`` all plug in alike, as in Hui & Belkin's ASR setting where CTC is kept and the
attention decoder's cross-entropy is replaced) and ``ctc_cost`` is :func:`hf_squareloss.speechbrain.tamed_ctc_loss`
(``ctc_alpha = 0`` being SpeechBrain's CTC exactly).

Validation decodes greedily, test with the joint CTC-attention beam search; the decoder's scores enter the beam
through :class:`hf_squareloss.speechbrain.DecoderLogProbs`, whose sharpness is fitted on the validation set before
the first beam-search evaluation when the decoder was trained with the square loss (see :mod:`.scoring`).

Hyper-parameters read from the YAML (``self.hparams``): ``compute_features``, ``ctc_cost``, ``seq_cost``,
``ctc_weight``, ``seq_log_probs``, ``valid_search``, ``test_search``, ``lr_annealing`` (called after every optimiser
step), ``train_logger``, ``epoch_counter``, ``pad_index`` and, optionally, ``fea_augment`` (a SpeechBrain
``Augmenter`` on features), ``calibration_max_steps``, ``seq_loss_from_hidden_states`` (the decoder loss from the
decoder's hidden states and ``seq_lin``'s weight while training). Modules: ``CNN``, ``Transformer``, ``ctc_lin``, ``seq_lin``,
``normalize``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..calibration import calibration_metrics
from ..environment import torchaudio_guard
from .masking import length_mask

with (
    torchaudio_guard()
):  # SpeechBrain imports torchaudio: a broken torch/torchaudio pair gets a clear message
    import speechbrain as sb
    from speechbrain.utils.Accuracy import AccuracyStats
    from speechbrain.utils.distributed import if_main_process
    from speechbrain.utils.metric_stats import ErrorRateStats
from .scoring import fit_score_scale
from .units import Tokenizer

__all__ = ["JointCTCAttentionBrain"]

logger = logging.getLogger(__name__)

DEFAULT_CALIBRATION_MAX_STEPS = 20_000


class JointCTCAttentionBrain(sb.Brain):
    """SpeechBrain ``Brain`` for joint CTC-attention ASR whose decoder loss is any registered loss.

    Extra keyword arguments (besides ``sb.Brain``'s):
        tokenizer: turns token ids back into text (:mod:`hf_squareloss.speechbrain.units`).
        results_file: JSON file that evaluations add their figures to (written by the main process only).
        calibration_set: dataset (or loader) of held-out utterances (the validation set) on which the decoder's
            token-level calibration is measured (``valid_token_ece`` ... in ``results_file``) and the square-loss
            decoder's score sharpness is fitted before beam search; ``None``: neither, the configured sharpness.
        calibration_loader_kwargs: ``make_dataloader`` arguments for ``calibration_set``.
        fit_score_scale: fit the sharpness on ``calibration_set`` (else the YAML's ``score_scale`` is used).
        error_rate_name: ``"WER"`` (words) or ``"PER"`` (phones: the "words" are phones); CER is reported for words.
    """

    def __init__(
        self,
        *args: Any,
        tokenizer: Tokenizer,
        results_file: str | Path,
        calibration_set: Any = None,
        calibration_loader_kwargs: Mapping[str, Any] | None = None,
        fit_score_scale: bool = True,
        error_rate_name: str = "WER",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer
        self.results_file = Path(results_file)
        self.calibration_set = calibration_set
        self.calibration_loader_kwargs = dict(calibration_loader_kwargs or {})
        if error_rate_name not in ("WER", "PER"):
            raise ValueError(f"error_rate_name must be 'WER' or 'PER', got {error_rate_name!r}")
        self.error_rate_name = error_rate_name
        self.eval_name = "test"
        self.fit_scale = bool(fit_score_scale)
        self.fitted_scale: float | None = None
        self.token_calibration_done = False
        self.train_stats: dict[str, float] = {}

    # ----------------------------------------------------------------------------------------------------------
    # forward and loss
    # ----------------------------------------------------------------------------------------------------------
    def encode_decode(self, batch: Any, stage: sb.Stage) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Teacher-forced pass: ``(ctc_log_probs, decoder_logits, encoder_out, relative_lengths)``."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        feats = self.hparams.compute_features(wavs)
        augment = getattr(self.hparams, "fea_augment", None)
        if stage == sb.Stage.TRAIN and augment is not None:
            feats, wav_lens = augment(feats, wav_lens)
            tokens_bos = augment.replicate_labels(tokens_bos)
        current_epoch = self.hparams.epoch_counter.current
        feats = self.modules.normalize(feats, wav_lens, epoch=current_epoch)
        src = self.modules.CNN(feats)
        enc_out, dec_out = self.modules.Transformer(src, tokens_bos, wav_lens, pad_idx=self.hparams.pad_index)
        ctc_log_probs = torch.log_softmax(self.modules.ctc_lin(enc_out), dim=-1)
        if self.decoder_loss_from_hidden_states(stage):
            # the decoder's hidden states in place of its logits: seq_lin runs (so that DDP sees it used) but
            # records its input and makes no logits; compute_objectives applies the loss to that input
            from ..hidden_states import capture_output_layer_input

            with capture_output_layer_input(self._seq_linear()) as seen:
                self.modules.seq_lin(dec_out)
            return ctc_log_probs, seen[0], enc_out, wav_lens
        dec_logits = self.modules.seq_lin(dec_out)
        return ctc_log_probs, dec_logits, enc_out, wav_lens

    def decoder_loss_from_hidden_states(self, stage: sb.Stage) -> bool:
        """True when training computes the decoder loss from its hidden states and ``seq_lin``'s weight
        (``seq_loss_from_hidden_states: True`` in the YAML): the decoder's logits are then never made."""
        return stage == sb.Stage.TRAIN and bool(getattr(self.hparams, "seq_loss_from_hidden_states", False))

    def _seq_linear(self) -> torch.nn.Linear:
        layer = getattr(self.modules.seq_lin, "module", self.modules.seq_lin)  # DDP-wrapped or not
        return getattr(layer, "w", layer)  # speechbrain.nnet.linear.Linear keeps its nn.Linear as .w

    def compute_forward(self, batch: Any, stage: sb.Stage) -> tuple[Tensor, Tensor, Tensor, list | None]:
        ctc_log_probs, dec_logits, enc_out, wav_lens = self.encode_decode(batch, stage)
        hyps = None
        if stage == sb.Stage.VALID and self.decode_this_epoch():
            hyps, _, _, _ = self.hparams.valid_search(enc_out.detach(), wav_lens)
        elif stage == sb.Stage.TEST:
            hyps, _, _, _ = self.hparams.test_search(enc_out.detach(), wav_lens)
        return ctc_log_probs, dec_logits, wav_lens, hyps

    def compute_objectives(self, predictions: tuple, batch: Any, stage: sb.Stage) -> Tensor:
        ctc_log_probs, dec_logits, wav_lens, hyps = predictions
        batch = batch.to(self.device)
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        tokens, tokens_lens = batch.tokens
        augment = getattr(self.hparams, "fea_augment", None)
        if stage == sb.Stage.TRAIN and augment is not None:
            tokens_eos, tokens_eos_lens, tokens, tokens_lens = augment.replicate_multiple_labels(
                tokens_eos, tokens_eos_lens, tokens, tokens_lens
            )
        if self.decoder_loss_from_hidden_states(stage):  # dec_logits holds the decoder's hidden states
            loss_seq = self.hparams.seq_cost.hidden_states_loss(
                dec_logits, self._seq_linear(), tokens_eos, length=tokens_eos_lens
            )
        else:
            loss_seq = self.hparams.seq_cost(dec_logits, tokens_eos, length=tokens_eos_lens)
        loss_ctc = self.hparams.ctc_cost(ctc_log_probs, tokens, wav_lens, tokens_lens)
        weight = self.hparams.ctc_weight
        loss = weight * loss_ctc + (1.0 - weight) * loss_seq
        if stage != sb.Stage.TRAIN:
            self.seq_loss_sum += float(loss_seq) * len(batch.id)
            self.ctc_loss_sum += float(loss_ctc) * len(batch.id)
            self.utterances += len(batch.id)
            self.acc_metric.append(dec_logits, tokens_eos, tokens_eos_lens)
            if hyps is not None:
                predicted = [self.tokenizer.decode(hyp).split() for hyp in hyps]
                reference = [text.split() for text in batch.text]
                self.error_metric.append(batch.id, predicted, reference)
                if self.char_metric is not None:
                    self.char_metric.append(batch.id, predicted, reference)
        return loss

    def decode_this_epoch(self) -> bool:
        """Validation decodes every ``valid_search_interval`` epochs (default 1) and always at the last one; the
        best checkpoint is chosen among the decoded epochs."""
        counter = self.hparams.epoch_counter
        interval = int(getattr(self.hparams, "valid_search_interval", 1))
        return counter.current % max(interval, 1) == 0 or counter.current >= counter.limit

    def on_fit_batch_end(self, batch: Any, outputs: Any, loss: Tensor, should_step: bool) -> None:
        if should_step:
            self.hparams.lr_annealing(self.optimizer)

    # ----------------------------------------------------------------------------------------------------------
    # stages
    # ----------------------------------------------------------------------------------------------------------
    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        if stage != sb.Stage.TRAIN:
            self.acc_metric = AccuracyStats()
            self.error_metric = ErrorRateStats()
            self.char_metric = ErrorRateStats(split_tokens=True) if self.error_rate_name == "WER" else None
            self.seq_loss_sum = 0.0
            self.ctc_loss_sum = 0.0
            self.utterances = 0

    def _eval_stats(self, stage_loss: float) -> dict[str, float]:
        stats = {
            "loss": float(stage_loss),
            "seq_loss": self.seq_loss_sum / max(self.utterances, 1),
            "ctc_loss": self.ctc_loss_sum / max(self.utterances, 1),
            "ACC": float(self.acc_metric.summarize()),
        }
        if self.error_metric.scores:
            stats[self.error_rate_name] = float(self.error_metric.summarize("error_rate"))
            if self.char_metric is not None:
                stats["CER"] = float(self.char_metric.summarize("error_rate"))
        return stats

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": float(stage_loss)}
            return
        stats = self._eval_stats(stage_loss)
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr, "steps": self.optimizer_step},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            meta = {key: stats[key] for key in (self.error_rate_name, "CER") if key in stats}
            self.checkpointer.save_and_keep_only(
                meta={**meta, "epoch": epoch},
                min_keys=[self.error_rate_name],
                num_to_keep=getattr(self.hparams, "keep_checkpoints", 1),
            )
            self.update_results(
                {
                    "epochs": epoch,
                    **{f"last_valid_greedy_{k.lower()}": v for k, v in meta.items()},
                    "history": self._history_with(epoch, stats),
                }
            )
        else:
            name = self.eval_name
            self.hparams.train_logger.log_stats(
                stats_meta={"evaluated": name, "epochs trained": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            figures = {f"{name}_{key.lower()}": value for key, value in stats.items()}
            self.update_results(figures)
            if if_main_process():
                out = Path(self.hparams.output_folder) / f"{name}_hypotheses.txt"
                with out.open("w", encoding="utf-8") as handle:
                    self.error_metric.write_stats(handle)

    # ----------------------------------------------------------------------------------------------------------
    # evaluation: best checkpoint, score calibration, named result keys
    # ----------------------------------------------------------------------------------------------------------
    def evaluate_set(self, name: str, dataset: Any, loader_kwargs: Mapping[str, Any]) -> float:
        """Beam-search evaluation of ``dataset`` with the best checkpoint; figures go to ``results_file``
        under ``<name>_wer``, ``<name>_cer`` (or ``<name>_per``), ``<name>_loss``, ..."""
        self.eval_name = name
        return self.evaluate(dataset, min_key=self.error_rate_name, test_loader_kwargs=dict(loader_kwargs))

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Load the best checkpoint; before the first beam search, measure the decoder's token-level calibration on
        ``calibration_set`` and, for a square-loss decoder, set its score sharpness: fitted once on
        ``calibration_set`` (``fit_score_scale``) and reused for every evaluated set, or the YAML's ``score_scale``
        (loading a checkpoint would otherwise restore the value stored during training)."""
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        seq_log_probs = self.hparams.seq_log_probs
        sample = None
        if self.calibration_set is not None and not self.token_calibration_done:
            sample = self.teacher_forced_sample()
        if seq_log_probs.outputs_scores:
            configured = float(getattr(self.hparams, "score_scale", seq_log_probs.scale))
            if self.calibration_set is not None and self.fit_scale:
                if self.fitted_scale is None:
                    seq_log_probs.scale = configured
                    if sample is not None:
                        self._record_token_calibration(sample, "_uncalibrated")
                    scores = seq_log_probs.normalised_scores(sample[0]) if sample is not None else None
                    self.fitted_scale = (
                        fit_score_scale(scores, sample[1])
                        if scores is not None
                        else self.calibrate_score_scale()
                    )
                    self.update_results(
                        {"score_scale": self.fitted_scale, "score_scale_source": "fitted on valid"}
                    )
                seq_log_probs.scale = self.fitted_scale
            else:
                seq_log_probs.scale = configured
                self.update_results({"score_scale": seq_log_probs.scale, "score_scale_source": "fixed"})
            logger.info(
                "beam search on %s: decoder score sharpness %.4g nats", self.eval_name, seq_log_probs.scale
            )
        if sample is not None:
            self._record_token_calibration(sample, "")
            self.token_calibration_done = True

    def _record_token_calibration(self, sample: tuple[Tensor, Tensor], suffix: str) -> None:
        """``valid_token_ece``, ``_nll``, ``_brier``, ``_accuracy`` (+ ``suffix``) of the next-token distribution
        the beam search uses (:class:`~hf_squareloss.speechbrain.DecoderLogProbs` at its current sharpness)."""
        logits, targets = sample
        log_probs = self.hparams.seq_log_probs.log_probs_from_logits(logits.double())
        metrics = calibration_metrics(log_probs.exp(), targets)
        self.update_results({f"valid_token_{name}{suffix}": value for name, value in metrics.items()})
        if not suffix:
            self.update_results({"valid_token_count": int(targets.numel())})

    @torch.no_grad()
    def calibrate_score_scale(self) -> float:
        """Fit the square-loss decoder's score sharpness on ``calibration_set`` (teacher forcing; see
        :meth:`teacher_forced_sample`)."""
        logits, targets = self.teacher_forced_sample()
        return fit_score_scale(self.hparams.seq_log_probs.normalised_scores(logits), targets)

    @torch.no_grad()
    def teacher_forced_sample(self) -> tuple[Tensor, Tensor]:
        """Raw decoder logits ``[N, C]`` and reference tokens ``[N]`` of ``calibration_set`` (teacher forcing).

        At most ``calibration_max_steps`` decoder steps (default 20,000) are kept, a uniform random sample drawn
        while iterating (each step gets a random key, the smallest keys are kept), so memory stays bounded on large
        validation sets.
        """
        limit = int(getattr(self.hparams, "calibration_max_steps", DEFAULT_CALIBRATION_MAX_STEPS))
        loader = self.calibration_set
        if not isinstance(loader, torch.utils.data.DataLoader):
            loader = self.make_dataloader(
                loader, sb.Stage.TEST, ckpt_prefix=None, **self.calibration_loader_kwargs
            )
        self.modules.eval()
        generator = torch.Generator().manual_seed(0)
        kept_logits = kept_targets = kept_keys = None
        for batch in loader:
            _, dec_logits, _, _ = self.encode_decode(batch, sb.Stage.TEST)
            tokens_eos, tokens_eos_lens = batch.tokens_eos
            steps = min(dec_logits.shape[1], tokens_eos.shape[1])
            mask = length_mask(tokens_eos_lens, tokens_eos.shape[0], tokens_eos.shape[1], dec_logits.device)
            mask = mask[:, :steps]
            logits = dec_logits[:, :steps][mask].float().cpu()
            targets = tokens_eos[:, :steps].to(mask.device)[mask].cpu()
            keys = torch.rand(logits.shape[0], generator=generator)
            if kept_logits is not None:
                logits = torch.cat([kept_logits, logits])
                targets = torch.cat([kept_targets, targets])
                keys = torch.cat([kept_keys, keys])
            if logits.shape[0] > limit:
                order = keys.argsort()[:limit]
                logits, targets, keys = logits[order], targets[order], keys[order]
            kept_logits, kept_targets, kept_keys = logits, targets, keys
        if kept_logits is None:
            raise ValueError("the calibration set is empty")
        return kept_logits, kept_targets

    def _history_with(self, epoch: int | None, stats: Mapping[str, float]) -> list[dict[str, Any]]:
        """The validation curve in ``results.json`` with this epoch's entry (replacing one of the same epoch, as a
        resumed run validates again): ``eval_loss``, ``eval_acc`` every epoch, ``eval_wer``/``eval_cer`` (or
        ``eval_per``) on the epochs that decode."""
        history: list[dict[str, Any]] = []
        if self.results_file.is_file():
            history = json.loads(self.results_file.read_text(encoding="utf-8")).get("history") or []
        entry = {"epoch": float(epoch or 0), "eval_loss": stats["loss"], "eval_acc": stats["ACC"]}
        entry.update(
            {f"eval_{key.lower()}": stats[key] for key in (self.error_rate_name, "CER") if key in stats}
        )
        entry = {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}
        return [h for h in history if h.get("epoch") != entry["epoch"]] + [entry]

    def update_results(self, figures: Mapping[str, Any]) -> None:
        """Merge ``figures`` into ``results_file`` (main process only; rounded to 4 decimals)."""
        if not if_main_process():
            return
        results: dict[str, Any] = {}
        if self.results_file.is_file():
            results = json.loads(self.results_file.read_text(encoding="utf-8"))
        for key, value in figures.items():
            results[key] = round(value, 4) if isinstance(value, float) else value
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.results_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.results_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.results_file)
