"""`aigc generate`: complete a prompt (or one chat message) and print only the generated text."""

from __future__ import annotations

import argparse
import json
import sys

from aigc.cli.common import add_model_args, add_sampling_args, load, sampling_params_from


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a prompt or a chat message")
    add_model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", "-p", help="raw prompt, continued as is")
    src.add_argument("--chat", "-c", help="a user message, wrapped in the model's chat template")
    p.add_argument("--system", help="system prompt (with --chat)")
    add_sampling_args(p)
    p.add_argument("--n", type=int, default=1, help="number of samples (default: %(default)s)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width (1 = off)")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam search length penalty")
    p.add_argument("--logprobs", type=int, default=None, metavar="K",
                   help="with --json: per-token logprobs and the K most likely alternatives")
    p.add_argument("--json", action="store_true", help="print completions as JSON (text, finish_reason, ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.engine.offline import generate, stream_generate

    if args.system is not None and args.chat is None:
        raise ValueError("--system needs --chat")
    params = sampling_params_from(args, n=args.n, num_beams=args.num_beams,
                                  length_penalty=args.length_penalty, logprobs=args.logprobs)
    if params.use_beam_search:
        params.temperature = 0.0
    lm = load(args)
    tok = lm.tokenizer
    if args.chat is not None:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.chat}]
        prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    else:
        prompt_ids = tok.encode(args.prompt, add_special_tokens=True)
    if not prompt_ids:
        raise ValueError("the prompt is empty")

    if params.n == 1 and not params.use_beam_search and not args.json:
        for event in stream_generate(lm.model, tok, prompt_ids, params, eos_token_ids=lm.eos_token_ids):
            if event.text_delta:
                sys.stdout.write(event.text_delta)
                sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    completions = generate(lm.model, [prompt_ids], params, eos_token_ids=lm.eos_token_ids, tokenizer=tok)[0]
    if args.json:
        out = [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "token_ids": c.token_ids,
                "cumulative_logprob": c.cumulative_logprob,
                "logprobs": [_logprob_json(tok, lp) for lp in c.logprobs] if c.logprobs else None}
               for i, c in enumerate(completions)]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    for i, c in enumerate(completions):
        if len(completions) > 1:
            print(f"--- sample {i + 1} ---")
        print(c.text)
    return 0


def _logprob_json(tok, lp) -> dict:
    return {"token": tok.decode([lp.token_id]), "token_id": lp.token_id, "logprob": lp.logprob,
            "top": [{"token": tok.decode([t]), "token_id": t, "logprob": v} for t, v in lp.top]}
