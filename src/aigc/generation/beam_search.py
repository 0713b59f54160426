"""Beam search with Hugging Face's semantics (`generate(num_beams=..., do_sample=False)`, transformers v5).

One prompt at a time, one KV-cache row per beam. Per step:
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
from aigc.generation.prefill import grow_cache, prefill
from aigc.models.transformer import CacheWrite, Transformer

_NEG = -1.0e9  # HF's "never pick this" offset; kept identical so ties break the same way


@dataclass
class Hypothesis:
    token_ids: list[int]  # generated tokens, including the final eos/stop token if there is one
    score: float  # sum of logprobs / len ** length_penalty
    logprob_sum: float
    ended_by_stop_token: bool


@torch.inference_mode()
def beam_search(model: Transformer, prompt_ids: list[int], params: SamplingParams, *,
                stop_token_ids: list[int], max_new_tokens: int, prefill_chunk: int = 512) -> list[Hypothesis]:
    """The best `params.n` hypotheses for one prompt, best first."""
    nb, lp, early = params.num_beams, params.length_penalty, params.early_stopping
    dev, P, V = model.device, len(prompt_ids), model.config.vocab_size
    stop_ids = torch.tensor(sorted(set(stop_token_ids)), dtype=torch.long, device=dev)
    K = max(2, 1 + len(stop_ids)) * nb
    top_mask = torch.arange(K, device=dev) < nb  # only the first num_beams candidates may finish

    cache = model.new_cache(nb, P + min(max_new_tokens, 256))
    logits = prefill(model, cache, [prompt_ids], None, prefill_chunk)
    for b in range(1, nb):
        cache.copy_slot(0, b, P)
    logits = logits.expand(nb, -1)

    penalties = _BeamPenalties(params, prompt_ids, nb, V, dev)
    running = torch.zeros(nb, max_new_tokens, dtype=torch.long, device=dev)
    running_scores = torch.zeros(nb, device=dev)
    running_scores[1:] = _NEG  # all beams start identical: expand only the first
    fin_seqs = running.clone()
    fin_scores = torch.full((nb,), _NEG, device=dev)
    fin_done = torch.zeros(nb, dtype=torch.bool, device=dev)
    fin_len = torch.zeros(nb, dtype=torch.long, device=dev)
    may_improve = True

    t = 0  # tokens generated so far
    while True:
        logp = torch.log_softmax(logits.float(), dim=-1)
        penalties.apply(logp)
        top_vals, top_idx = (logp + running_scores[:, None]).view(-1).topk(K)
        src, tokens = top_idx // V, top_idx % V
        cand = running[src]
        cand[:, t] = tokens
        ends = torch.isin(tokens, stop_ids) if len(stop_ids) else torch.zeros_like(top_mask)
        if t + 1 >= max_new_tokens:
            ends = torch.ones_like(ends)

        # Next running beams: the best candidates that did not end.
        alive_scores = top_vals + ends.float() * _NEG
        keep = alive_scores.topk(nb).indices
        running, running_scores, beam_src = cand[keep], alive_scores[keep], src[keep]

        # Finished hypotheses: merge the new ones into the best num_beams so far.
        scores = top_vals / ((t + 1) ** lp)
        if early is True and bool(fin_done.all()):
            scores = scores + _NEG
        if not may_improve:
            scores = scores + _NEG
        just_done = ends & top_mask
        scores = scores + (~just_done) * _NEG
        merged = torch.cat((fin_scores, scores))
        best = merged.topk(nb).indices
        fin_scores = merged[best]
        fin_seqs = torch.cat((fin_seqs, cand))[best]
        fin_done = torch.cat((fin_done, just_done))[best]
        fin_len = torch.cat((fin_len, torch.full((K,), t + 1, device=dev)))[best]
        t += 1

        best_len = max_new_tokens if (early == "never" and lp > 0) else t
        best_running = running_scores[0] / (best_len**lp)
        worst_done = torch.where(fin_done, fin_scores.min(), torch.tensor(_NEG, device=dev))
        may_improve = may_improve and bool((best_running > worst_done).any())
        if not may_improve or (early is True and bool(fin_done.all())) or bool(ends.all()):
            break

        cache.reorder(beam_src)
        penalties.reorder_and_record(beam_src, running[:, t - 1])
        if P + t > cache.max_len:
            cache = grow_cache(model, cache, P + t - 1, min(2 * cache.max_len, P + max_new_tokens))
        write = CacheWrite(rows=slice(0, nb), length=P + t, start=P + t - 1)
        logits = model(running[:, t - 1 : t], cache=cache, write=write)[:, -1]

    out = []
    for i in range(params.n):
        n = int(fin_len[i])
        ids = fin_seqs[i, :n].tolist()
        score = float(fin_scores[i])
        out.append(Hypothesis(ids, score, score * n**lp, bool(ids) and ids[-1] in stop_token_ids))
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
