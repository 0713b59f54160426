"""Beam search with Hugging Face's semantics (`generate(num_beams=..., do_sample=False)`, transformers v5).

`BeamSearch` is the search state of one prompt; the engine core feeds it the logits of the beams'
rows (one KV-cache slot per beam) in its ordinary mixed steps. Per step:
- every beam's log-softmax (then logit_bias and penalties: HF applies processors to log-probs) is
  added to the beam's running score; the best K = max(2, 1 + #eos) * num_beams continuations over all
  beams are kept, so enough non-finished ones remain;
- candidates that end (an eos/stop token, or the length limit) and rank among the first num_beams
  become finished hypotheses with score = sum of logprobs / generated_length ** length_penalty
  (generated_length counts the eos token); the best num_beams hypotheses are kept;
- the best num_beams unfinished candidates continue (the cache rows are reordered to follow them).
Search ends when every candidate hit the length limit, when early_stopping=True and num_beams
hypotheses are finished, or when no running beam can still beat the worst finished hypothesis
(estimated with the current length, or the maximum length for early_stopping="never" with a
positive length_penalty).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aigc.generation.logits import apply_presence_frequency, apply_repetition_penalty, logit_bias_row
from aigc.generation.params import SamplingParams

_NEG = -1.0e9  # HF's "never pick this" offset; kept identical so ties break the same way


@dataclass
class Hypothesis:
    token_ids: list[int]  # generated tokens, including the final eos/stop token if there is one
    score: float  # sum of logprobs / len ** length_penalty
    logprob_sum: float
    ended_by_stop_token: bool


class BeamSearch:
    """The search state of one prompt, advanced one token at a time by whoever runs the model.

    The engine core runs the beams as `num_beams` rows of its ordinary steps (so a beam request
    shares each forward with other requests): it feeds `advance` the logits of the beams' rows, then
    makes every row i continue from row `src[i]` (K/V and history) with token `tokens[i]`.
    """

    def __init__(self, params: SamplingParams, prompt_ids: list[int], *, stop_token_ids: list[int],
                 max_new_tokens: int, vocab_size: int, device: torch.device | str = "cpu"):
        self.params, self.max_new = params, max_new_tokens
        nb, dev = params.num_beams, torch.device(device)
        self.nb, self.V, self.dev = nb, vocab_size, dev
        self.stop_token_ids = sorted(set(stop_token_ids))
        self.stop_ids = torch.tensor(self.stop_token_ids, dtype=torch.long, device=dev)
        self.K = max(2, 1 + len(self.stop_ids)) * nb
        self.top_mask = torch.arange(self.K, device=dev) < nb  # only the first num_beams candidates may finish
        self.penalties = _BeamPenalties(params, prompt_ids, nb, vocab_size, dev)
        self.running = torch.zeros(nb, max_new_tokens, dtype=torch.long, device=dev)
        self.running_scores = torch.zeros(nb, device=dev)
        self.running_scores[1:] = _NEG  # all beams start identical: expand only the first
        self.fin_seqs = self.running.clone()
        self.fin_scores = torch.full((nb,), _NEG, device=dev)
        self.fin_done = torch.zeros(nb, dtype=torch.bool, device=dev)
        self.fin_len = torch.zeros(nb, dtype=torch.long, device=dev)
        self.may_improve = True
        self.t = 0  # tokens generated so far
        self.done = max_new_tokens <= 0

    def advance(self, logits: torch.Tensor) -> tuple[list[int], list[int]] | None:
        """Logits [num_beams, V] of the beams' last tokens (identical rows on the first call).
        Returns (src, tokens): row i continues beam src[i] with tokens[i]; None when the search ended."""
        nb, V, t, lp, early = self.nb, self.V, self.t, self.params.length_penalty, self.params.early_stopping
        logp = torch.log_softmax(logits.float(), dim=-1)
        self.penalties.apply(logp)
        top_vals, top_idx = (logp + self.running_scores[:, None]).view(-1).topk(self.K)
        src, tokens = top_idx // V, top_idx % V
        cand = self.running[src]
        cand[:, t] = tokens
        ends = torch.isin(tokens, self.stop_ids) if len(self.stop_ids) else torch.zeros_like(self.top_mask)
        if t + 1 >= self.max_new:
            ends = torch.ones_like(ends)

        # Next running beams: the best candidates that did not end.
        alive_scores = top_vals + ends.float() * _NEG
        keep = alive_scores.topk(nb).indices
        self.running, self.running_scores, beam_src = cand[keep], alive_scores[keep], src[keep]

        # Finished hypotheses: merge the new ones into the best num_beams so far.
        scores = top_vals / ((t + 1) ** lp)
        if early is True and bool(self.fin_done.all()):
            scores = scores + _NEG
        if not self.may_improve:
            scores = scores + _NEG
        just_done = ends & self.top_mask
        scores = scores + (~just_done) * _NEG
        merged = torch.cat((self.fin_scores, scores))
        best = merged.topk(nb).indices
        self.fin_scores = merged[best]
        self.fin_seqs = torch.cat((self.fin_seqs, cand))[best]
        self.fin_done = torch.cat((self.fin_done, just_done))[best]
        self.fin_len = torch.cat((self.fin_len, torch.full((self.K,), t + 1, device=self.dev)))[best]
        self.t = t = t + 1

        best_len = self.max_new if (early == "never" and lp > 0) else t
        best_running = self.running_scores[0] / (best_len**lp)
        worst_done = torch.where(self.fin_done, self.fin_scores.min(), torch.tensor(_NEG, device=self.dev))
        self.may_improve = self.may_improve and bool((best_running > worst_done).any())
        if not self.may_improve or (early is True and bool(self.fin_done.all())) or bool(ends.all()):
            self.done = True
            return None
        next_tokens = self.running[:, t - 1]
        self.penalties.reorder_and_record(beam_src, next_tokens)
        return beam_src.tolist(), next_tokens.tolist()

    def hypotheses(self) -> list[Hypothesis]:
        """The best `params.n` hypotheses, best first (after `advance` returned None)."""
        out, lp = [], self.params.length_penalty
        for i in range(self.params.n):
            n = int(self.fin_len[i])
            ids = self.fin_seqs[i, :n].tolist()
            score = float(self.fin_scores[i])
            out.append(Hypothesis(ids, score, score * n**lp, bool(ids) and ids[-1] in self.stop_token_ids))
        return out


class _BeamPenalties:
    """Penalty history per beam, reordered with the beams (HF applies penalties to log-probs here)."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int], nb: int, V: int, dev: torch.device):
        self.params = params
        self.bias = logit_bias_row(params.logit_bias, V, dev) if params.logit_bias else None
        self.seen = self.counts = None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(nb, V, dtype=torch.bool, device=dev)
            self.seen[:, torch.tensor(prompt_ids, device=dev)] = True
            self.rep = torch.full((nb,), params.repetition_penalty, device=dev)
        if params.presence_penalty or params.frequency_penalty:
            self.counts = torch.zeros(nb, V, device=dev)
            self.presence = torch.full((nb,), params.presence_penalty, device=dev)
            self.frequency = torch.full((nb,), params.frequency_penalty, device=dev)

    def apply(self, logp: torch.Tensor) -> None:
        if self.bias is not None:  # bias first, then penalties (HF's processor order)
            logp += self.bias
        if self.seen is not None:
            apply_repetition_penalty(logp, self.seen, self.rep)
        if self.counts is not None:
            apply_presence_frequency(logp, self.counts, self.presence, self.frequency)

    def reorder_and_record(self, beam_src: torch.Tensor, tokens: torch.Tensor) -> None:
        rows = torch.arange(len(tokens), device=tokens.device)
        if self.seen is not None:
            self.seen = self.seen[beam_src]
            self.seen[rows, tokens] = True
        if self.counts is not None:
            self.counts = self.counts[beam_src]
            self.counts[rows, tokens] += 1
