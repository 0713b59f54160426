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
    from aigc.engine.offline import complete, started_engine, stream

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

    slots = 1 if params.use_beam_search else params.n
    with started_engine(lm, max_concurrency=slots) as engine:
        if params.n == 1 and not params.use_beam_search and not args.json:
            for delta in stream(engine, prompt_ids, params):
                if delta.text:
                    sys.stdout.write(delta.text)
                    sys.stdout.flush()
            sys.stdout.write("\n")
            return 0
        completions = complete(engine, prompt_ids, params)
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
    return {"token": lp.token, "token_id": lp.token_id, "logprob": lp.logprob,
            "top": [{"token": t.token, "token_id": t.token_id, "logprob": t.logprob} for t in lp.top]}
