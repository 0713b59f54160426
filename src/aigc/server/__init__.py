"""The HTTP server: an OpenAI-compatible API over local engines and remote OpenAI-style servers.

It knows requests and JSON, never tensors. One file per idea:

- app.py            `create_app(settings, backends)`: routes, middleware, /health, /metrics
- launch.py         `serve(settings)`: the safe-bind rule, then uvicorn
- backends.py       model name -> local engine + tokenizer (loaded in the background) or remote
- remote.py         proxy to any OpenAI-compatible endpoint (`--remote NAME=URL[,key=ENV]`)
- openai_routes.py  /v1/models, /v1/completions, /v1/chat/completions, /tokenize, /detokenize
- prompts.py        request -> prompt token ids + SamplingParams (all the 400s live here)
- reasoning.py      a reasoning model's <think> block split off its answer (reasoning_content)
- schemas.py        request/response bodies as the `openai` client sends and parses them
- logprobs.py       per-token log-probabilities in chat and completions shapes
- sse.py            server-sent events that cancel generation when the client disconnects
- stream_merge.py   several engine streams (a batch of prompts) read as one
- errors.py         OpenAI's error shape for every failure, with the right status
- auth.py           Bearer API keys (constant-time comparison)
- request_log.py    one record per request: one log line, fed to metrics
- metrics.py        Prometheus metrics (per-app registry)
- app_*.py          the web app's API (conversations, studio) mounted on the same server
"""
