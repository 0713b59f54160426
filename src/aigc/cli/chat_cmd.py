"""`aigc chat`: a multi-turn terminal chat with streaming replies.

History is kept within the context window by dropping the oldest turns (never the system prompt);
the user is told when that happens. Commands: /reset, /system TEXT, /help, /exit.
"""

from __future__ import annotations

import argparse
import sys

from aigc.cli.common import add_model_args, add_sampling_args, load, sampling_params_from

HELP = "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /help, /exit"


def register(sub) -> None:
    p = sub.add_parser("chat", help="interactive multi-turn chat in the terminal")
    add_model_args(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--max-context", type=int, default=None,
                   help="use at most this many tokens of the model's context window")
    add_sampling_args(p, max_tokens=512)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.engine.core import EngineCore

    params = sampling_params_from(args)
    if args.max_context is not None and args.max_context < 16:
        raise ValueError("--max-context must be at least 16 tokens")
    lm = load(args)
    window = min(lm.context_window, args.max_context or lm.context_window)
    reply_room = min(params.max_tokens or window // 4, window // 2)
    budget = window - reply_room
    system = args.system
    interactive = sys.stdin.isatty()
    out = sys.stdout
    err = sys.stderr
    print(f"aigc chat · {lm.name} · context {window} tokens · {HELP}", file=err)
    # One engine core for the whole session: each turn reuses the previous turns' cached prefix.
    core = EngineCore(lm.model, lm.tokenizer, max_concurrency=1, max_context=window)
    try:
        return _loop(lm, core, params, budget, system, interactive, out, err)
    finally:
        core.close()


def _loop(lm, core, params, budget, system, interactive, out, err) -> int:
    from aigc.apps.chat.context import ContextOverflowError, fit_messages
    from aigc.engine.offline import stream_request
    from aigc.engine.protocol import EngineRequest

    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            if interactive:
                print(file=err)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/help":
            print(HELP, file=err)
            continue
        if text == "/reset":
            history.clear()
            print("[conversation reset]", file=err)
            continue
        if text.startswith("/system"):
            system = text[len("/system"):].strip() or None
            print(f"[system prompt {'set' if system else 'cleared'}]", file=err)
            continue
        if text.startswith("/"):
            print(f"[unknown command {text.split()[0]}; {HELP}]", file=err)
            continue

        history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        try:
            fitted = fit_messages(lm.tokenizer, messages, budget)
        except ContextOverflowError as e:
            history.pop()
            print(f"[{e}]", file=err)
            continue
        if fitted.dropped:
            dropped_ids = {id(m) for m in fitted.dropped}
            history[:] = [m for m in history if id(m) not in dropped_ids]
            print(f"[context window full: dropped the {len(fitted.dropped)} oldest message(s); "
                  f"the system prompt is kept]", file=err)
        if interactive:
            out.write("assistant> ")
        reply = []
        try:
            request = EngineRequest(fitted.prompt_ids, params, eos_token_ids=lm.eos_token_ids)
            for delta in stream_request(core, request):
                if delta.text:
                    reply.append(delta.text)
                    out.write(delta.text)
                    out.flush()
        except KeyboardInterrupt:
            print("\n[interrupted]", file=err)
        out.write("\n")
        out.flush()
        history.append({"role": "assistant", "content": "".join(reply)})
