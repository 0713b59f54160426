"""Eval sets (apps/evals): the file format, every check kind passing and failing, the judge's verdicts
with a scripted judge model, the runner on a scripted model, the stored runs, and `aigc eval run`'s
exit codes on the poet model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aigc.apps.chat.context import FittedContext
from aigc.apps.evals.runner import run_eval_set
from aigc.apps.evals.sets import (
    UnknownEvalSetError,
    builtin_set_names,
    builtin_sets,
    load_eval_set,
    parse_eval_set,
    read_eval_set,
)
from aigc.apps.evals.store import EvalRunStore
from aigc.apps.studio.catalog import load_builtin_templates
from aigc.cli.main import main
from aigc.eval.checks import Check, EvalSetError, parse_verdict
from aigc.store import Database

JINGYESI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
QIJUE = "远上寒山石径斜，白云生处有人家。\n停车坐爱枫林晚，霜叶红于二月花。"


def check(spec: dict, output: str, references: list[str] | None = None):
    return Check.parse(spec, "checks[0]").run(output, references or [])


# ---------------------------------------------------------------------------- the scripted model


class ScriptedStream:
    def __init__(self, text: str):
        self.text = text
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    async def __aiter__(self):
        for word in self.text.split(" "):
            self.completion_tokens += 1
            yield word + " "
        self.finish_reason = "stop"

    def cancel(self) -> None:
        self.finish_reason = self.finish_reason or "abort"


class ScriptedChat:
    """A ChatModel whose reply is `reply(messages, params)`; it records what it was asked."""

    exact_tokens = True

    def __init__(self, name: str, reply, window: int = 4096):
        self.name, self.window, self.reply = name, window, reply
        self.asked: list[tuple[list[dict[str, Any]], Any]] = []

    def count_tokens(self, text: str) -> int:
        return len(text)

    def fit(self, messages, budget) -> FittedContext:
        return FittedContext(list(messages), [0] * sum(len(m["content"]) for m in messages), budget=budget)

    async def stream(self, fitted, params) -> ScriptedStream:
        self.asked.append((fitted.messages, params))
        return ScriptedStream(self.reply(fitted.messages, params))


def run(eval_set, model, **kw):
    return asyncio.run(run_eval_set(eval_set, model, **kw))


# ---------------------------------------------------------------------------- parsing


def test_every_builtin_set_parses_and_each_template_has_one():
    sets = {s.name: s for s in builtin_sets()}
    assert set(sets) == set(load_builtin_templates()) == set(builtin_set_names())
    for s in sets.values():
        assert s.template == s.name and s.gate is not None and s.items and s.description["en"] and s.description["zh"]
        assert all(item.checks for item in s.items) and s.digest


def test_a_plain_set_and_its_defaults(tmp_path):
    path = tmp_path / "capitals.yaml"
    path.write_text(yaml.safe_dump({
        "description": "Capitals", "gate": 0.5, "system": "Answer in one word.", "params": {"temperature": 0},
        "checks": [{"regex": r"\S"}],
        "items": [{"prompt": "Capital of France?", "checks": [{"contains": "Paris"}]},
                  {"id": "de", "prompt": "Capital of Germany?", "reference": "Berlin", "checks": [{"chrf": 50}]}],
    }), encoding="utf-8")
    s = read_eval_set(path)
    assert s.name == "capitals" and s.description == {"zh": "Capitals", "en": "Capitals"} and s.gate == 0.5
    assert [i.id for i in s.items] == ["1", "de"] and [c.kind for c in s.items[0].checks] == ["regex", "contains"]
    assert s.items[1].references == ["Berlin"] and len(s.digest) == 12
    assert load_eval_set(str(path)).name == "capitals"
    with pytest.raises(UnknownEvalSetError, match="not a built-in set"):
        load_eval_set("no-such-set")


@pytest.mark.parametrize("data, message", [
    ({"items": []}, "items must be a non-empty list"),
    ({"items": [{"prompt": "x"}]}, "has no checks"),
    ({"itmes": []}, "unknown key"),
    ({"items": [{"prompt": "x", "checks": [{"contain": "a"}]}]}, "exactly one of"),
    ({"items": [{"prompt": "x", "checks": [{"contains": "a", "regex": "b"}]}]}, "exactly one of"),
    ({"items": [{"prompt": "x", "checks": [{"regex": "("}]}]}, "not a valid regular expression"),
    ({"items": [{"prompt": "x", "checks": [{"json_schema": {"type": "nope"}}]}]}, "not a valid JSON schema"),
    ({"items": [{"prompt": "x", "checks": [{"json_schema": "template"}]}]}, "needs a set whose template"),
    ({"items": [{"prompt": "x", "checks": [{"bleu": 10}]}]}, "need a reference"),
    ({"items": [{"prompt": "x", "checks": [{"chrf": 101}]}], "gate": 0.5}, "0 to 100"),
    ({"items": [{"prompt": "x", "checks": [{"poem_form": "sonnet"}]}]}, "must be one of"),
    ({"items": [{"prompt": "x", "checks": [{"contains": "a", "rhyme": True}]}]}, "unknown option"),
    ({"items": [{"prompt": "x", "checks": [{"contains": "a", "negate": "yes"}]}]}, "true or false"),
    ({"items": [{"prompt": "x", "checks": [{"judge": {"model": "m"}}]}]}, "needs a rubric"),
    ({"items": [{"prompt": "x", "checks": [{"judge": {"rubric": "r"}}]}]}, "name the judge model"),
    ({"items": [{"prompt": "x", "checks": [{"judge": {"model": "m", "rubric": "r", "min_score": 11}}]}]}, "min_score"),
    ({"gate": 1.5, "items": [{"prompt": "x", "checks": [{"contains": "a"}]}]}, "gate must be"),
    ({"params": {"temperature": 9}, "items": [{"prompt": "x", "checks": [{"contains": "a"}]}]}, "temperature"),
    ({"params": {"top_k": 5}, "items": [{"prompt": "x", "checks": [{"contains": "a"}]}]}, "params must be"),
    ({"items": [{"id": 1, "prompt": "x", "checks": [{"contains": "a"}]},
                {"id": 1, "prompt": "y", "checks": [{"contains": "a"}]}]}, "used twice"),
    ({"items": [{"values": {}, "checks": [{"contains": "a"}]}]}, "need a `template`"),
    ({"template": "sonnets", "items": [{"values": {}, "checks": [{"contains": "a"}]}]}, "not a built-in"),
    ({"template": "poem", "items": [{"values": {"form": "sonnet", "theme": "x"}, "checks": [{"contains": "a"}]}]},
     "must be one of"),
    ({"template": "poem", "items": [{"values": {}, "checks": [{"contains": "a"}]}]}, "theme is required"),
    ({"template": "poem", "items": [{"values": {"theme": "x"}, "output": "json", "checks": [{"contains": "a"}]}]},
     "no JSON output mode"),
    ({"template": "poem", "items": [{"prompt": "x", "checks": [{"contains": "a"}]}]}, "not a `prompt`"),
    ({"template": "poem", "system": "s", "items": [{"values": {"theme": "x"}, "checks": [{"contains": "a"}]}]},
     "system prompt"),
])
def test_set_errors_say_where(data, message):
    with pytest.raises(EvalSetError, match=message):
        parse_eval_set(data, name="t")


def test_a_file_that_is_not_yaml_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("items: [unclosed\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match="bad.yaml: not valid YAML") as e:
        read_eval_set(path)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- the checks


def test_exact_and_contains():
    assert check({"exact": "Paris"}, "  Paris\n").passed
    assert not check({"exact": "Paris"}, "paris").passed
    assert check({"exact": "Paris", "ignore_case": True}, "paris").passed
    assert check({"contains": ["bike", "lane"]}, "new bike lanes").passed
    r = check({"contains": ["bike", "tram"]}, "new bike lanes")
    assert not r.passed and "tram" in r.detail
    assert check({"contains": ["Sorry", "apolog"], "any": True, "ignore_case": True}, "we APOLOGISE").passed
    assert not check({"contains": ["sorry", "apolog"], "any": True}, "thanks").passed
    assert check({"contains": "秋"}, JINGYESI + "秋").passed


def test_regex_and_negate():
    assert check({"regex": r"(?m)^1\."}, "Questions:\n1. What is 1/2 + 1/4?").passed
    assert not check({"regex": r"(?m)^1\."}, "Question one").passed
    assert check({"regex": "hello", "ignore_case": True}, "HELLO there").passed
    assert check({"regex": "[\u4e00-\u9fff]"}, "中文").passed
    r = check({"contains": "{{", "negate": True}, "a {{ placeholder }}")
    assert not r.passed and "should not" in r.detail
    assert check({"contains": "{{", "negate": True}, "clean text").passed


def test_json_schema():
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    assert check({"json_schema": schema}, '{"title": "Pack"}').passed
    assert check({"json_schema": schema}, 'Here it is:\n```json\n{"title": "Pack"}\n```').passed  # fenced
    r = check({"json_schema": schema}, '{"name": "Pack"}')
    assert not r.passed and "title" in r.detail
    assert "not JSON" in check({"json_schema": schema}, '{"title": "Pa').detail
    quiz = load_builtin_templates()["quiz"].output_schema
    spec = Check.parse({"json_schema": "template"}, "c", output_schema=quiz)
    assert spec.run('{"questions": [{"question": "1/2+1/4?", "answer": "3/4"}]}', []).passed
    assert not spec.run('{"questions": []}', []).passed


def test_poem_form_and_rhyme():
    assert check({"poem_form": "五言绝句"}, JINGYESI).passed
    r = check({"poem_form": "七言绝句"}, JINGYESI)
    assert not r.passed and "七言绝句" in r.detail
    assert check({"poem_form": "七言绝句", "rhyme": True}, QIJUE).passed
    unrhymed = "远上寒山石径斜，白云生处有人家。\n停车坐爱枫林晚，霜叶红于二月叶。"
    assert check({"poem_form": "七言绝句"}, unrhymed).passed
    assert "rhyme" in check({"poem_form": "七言绝句", "rhyme": True}, unrhymed).detail


def test_bleu_and_chrf_against_references():
    refs = ["The cat sat on the mat."]
    good, bad = check({"chrf": 60}, "The cat sat on the mat.", refs), check({"chrf": 60}, "Dogs run fast.", refs)
    assert good.passed and good.score == 100 and not bad.passed and bad.score < 30 and "chrf" in bad.detail
    assert check({"bleu": 50}, "The cat sat on the mat.", refs).passed
    assert not check({"bleu": 50}, "A cat was sitting.", refs).passed
    zh = check({"bleu": 50}, "我喜欢喝茶。", ["我喜欢喝茶。"])  # Chinese references: sacrebleu's zh tokenizer
    assert zh.passed and zh.score == 100
    assert check({"chrf": 0, "required": False}, "x", refs).required is False


@pytest.mark.parametrize("reply, min_score, expect", [
    ('{"reason": "covers both points", "verdict": "pass"}', None, (True, None)),
    ('{"reason": "wrong date", "verdict": "fail"}', None, (False, None)),
    ('Sure! ```json\n{"verdict": "PASS", "reason": "ok"}\n```', None, (True, None)),
    ('{"reason": "good", "score": 8}', 7, (True, 8.0)),
    ('{"reason": "thin", "score": "4/10"}', 7, (False, 4.0)),
    ("The answer misses the refund. Verdict: FAIL", None, (False, None)),
    ("It is polite and complete.\n**Verdict:** Pass.", None, (True, None)),
    ("结论：通过", None, (True, None)),
    ("回答没有提到退款，不通过。", None, (False, None)),
    ("I would not call this a fail. Overall: pass", None, (True, None)),  # the last word said wins
    ("Score: 6/10. Verdict: pass", 7, (False, 6.0)),  # a score decides where one is asked for
    ("评分：9", 7, (True, 9.0)),
    ("Rating: 85/100", 7, (True, 8.5)),
    ("I give it 3/10", 5, (False, 3.0)),
    ("Score: 8", None, (None, 8.0)),  # a score, but no bar to hold it to
    ("I am a helpful assistant.", None, (None, None)),
])
def test_judge_verdicts_are_read_robustly(reply, min_score, expect):
    assert parse_verdict(reply, min_score=min_score) == expect


def test_the_judge_is_asked_with_the_rubric_and_its_verdict_decides():
    def judge_reply(messages, params):
        text = messages[-1]["content"]
        assert "The rubric:\nMentions Paris." in text and "The answer to grade:\n" in text
        assert "A reference answer:\nParis" in text
        assert params.temperature == 0 and params.json_schema["required"] == ["reason", "verdict"]
        return '{"reason": "names the capital", "verdict": "pass"}' if "Paris is" in text else "Verdict: FAIL"

    judge = ScriptedChat("judge-model", judge_reply)
    s = parse_eval_set({"items": [
        {"prompt": "Capital of France?", "reference": "Paris",
         "checks": [{"judge": {"model": "judge-model", "rubric": "Mentions Paris."}}]},
        {"prompt": "Capital of Italy?", "reference": "Paris",
         "checks": [{"judge": {"model": "judge-model", "rubric": "Mentions Paris."}}]},
    ]}, name="judged")
    assert s.judge_models == ["judge-model"]
    model = ScriptedChat("m", lambda messages, params: "Paris is the capital." if "France" in messages[-1]["content"]
                         else "Rome")
    judged = {}

    def judges(name):
        judged[name] = True
        return judge

    report = run(s, model, judges=judges)
    assert judged == {"judge-model": True}
    first, second = report.items
    assert first.passed and "names the capital" in first.checks[0].detail
    assert not second.passed and "FAIL" in second.checks[0].detail
    unreadable = run(s, model, judges=lambda name: ScriptedChat(name, lambda m, p: "hmm"), limit=1)
    assert "could not be read" in unreadable.items[0].checks[0].detail and not unreadable.items[0].passed
    assert "no judge model" in run(s, model, limit=1).items[0].checks[0].detail


def test_chinese_rubrics_get_a_chinese_judge_prompt():
    c = Check.parse({"judge": {"model": "j", "rubric": "回答须礼貌并给出解决办法。", "min_score": 6}}, "c")
    prompt = c.judge_messages("快递没到", "非常抱歉，我们马上查询。", [])[0]["content"]
    assert prompt.startswith("你在评判") and "1到10" in prompt and c.judge_schema()["required"] == ["reason", "score"]
    assert c.judge_result('{"reason": "礼貌", "score": 7}').passed
    assert not c.judge_result('{"reason": "敷衍", "score": 3}').passed


# ---------------------------------------------------------------------------- the runner


def test_template_items_run_as_the_studio_runs_them():
    s = parse_eval_set({"template": "poem", "params": {"seed": 10}, "items": [
        {"values": {"form": "五言绝句", "theme": "静夜"}, "checks": [{"poem_form": "五言绝句"}]},
        {"values": {"form": "七言绝句", "theme": "春"}, "checks": [{"poem_form": "七言绝句"}]},
        {"values": {"form": "七言绝句", "theme": "秋"}, "params": {"seed": 99}, "checks": [{"poem_form": "七言绝句"}]},
    ]}, name="poem-mini")
    model = ScriptedChat("poet", lambda messages, params: JINGYESI)
    report = run(s, model)
    assert [r.passed for r in report.items] == [True, False, False] and report.pass_rate == pytest.approx(1 / 3)
    asked = [messages for messages, _ in model.asked]
    template = load_builtin_templates()["poem"]
    prompts = sorted(m[-1]["content"] for m in asked)
    assert prompts == sorted(template.render(i.values) for i in s.items)  # the template's own prompt
    assert all(m[0]["role"] == "user" for m in asked)  # the poem template has no system prompt
    params = sorted((p.seed, p.temperature, p.max_tokens) for _, p in model.asked)
    assert params == [(10, 0.8, 160), (11, 0.8, 160), (99, 0.8, 160)]  # seed + i, the template's params
    rates = report.check_rates()
    assert rates["poem_form"] == {"passed": 1, "total": 3, "required": True, "rate": 0.3333, "mean_score": None}
    assert report.summary()["template_version"] == template.version


def test_json_items_decode_under_the_templates_schema_and_failures_are_items():
    s = parse_eval_set({"template": "quiz", "items": [
        {"values": {"topic": "fractions", "count": 1}, "output": "json", "checks": [{"json_schema": "template"}]},
        {"values": {"topic": "fractions", "count": 1}, "params": {"max_tokens": 5000},
         "checks": [{"contains": "1."}]},
    ]}, name="quiz-mini")
    model = ScriptedChat("m", lambda messages, params: '{"questions": [{"question": "1/2+1/4?", "answer": "3/4"}]}',
                         window=4096)
    report = run(s, model)
    ok, too_long = report.items
    assert ok.passed and model.asked[0][1].json_schema["required"] == ["questions"]
    assert model.asked[0][0][-1]["content"].endswith("Answer with JSON only.")
    assert not too_long.passed and "window" in too_long.error and too_long.checks[0].detail.startswith("no output")


def test_measured_checks_do_not_decide_and_limit_runs_the_first_items():
    s = parse_eval_set({"checks": [{"chrf": 90, "required": False}], "items": [
        {"prompt": f"say {w}", "reference": "completely different", "checks": [{"contains": w}]}
        for w in ("a", "b", "c")]}, name="m")
    report = run(s, ScriptedChat("m", lambda messages, params: messages[-1]["content"]), limit=2)
    assert len(report.items) == 2 and report.pass_rate == 1.0
    rates = report.check_rates()
    assert rates["chrf"]["rate"] == 0.0 and rates["chrf"]["required"] is False and rates["chrf"]["mean_score"] < 50


# ---------------------------------------------------------------------------- storage


def test_runs_are_stored_with_their_results(database_url):
    store = EvalRunStore(Database(database_url))
    s = parse_eval_set({"items": [{"prompt": "hi", "checks": [{"contains": "hi"}]},
                                  {"prompt": "yo", "checks": [{"contains": "hi"}]}]}, name="greet", digest="abc")
    started = store.start(s, "m1", total=2, gate=0.5, limit=None)
    assert started["status"] == "running" and started["pass_rate"] is None and started["gate"] == 0.5
    store.progress(started["id"], 1)
    assert store.get(started["id"], results=False)["done"] == 1
    report = run(s, ScriptedChat("m1", lambda messages, params: "hi there"))
    done = store.finish(started["id"], report)
    assert done["status"] == "done" and done["pass_rate"] == 1.0 and done["checks"]["contains"]["rate"] == 1.0
    full = store.get(started["id"])
    assert [r["id"] for r in full["results"]] == ["1", "2"] and full["results"][0]["output"].startswith("hi")
    assert full["results"][0]["checks"][0]["passed"] is True and full["finished_at"]
    other = store.start(s, "m2", total=2)
    assert [r["id"] for r in store.list()] == [other["id"], started["id"]]
    assert [r["model"] for r in store.list(model="m1")] == ["m1"] and store.list(set_name="nope") == []
    assert store.interrupt_running() == 1 and store.get(other["id"])["status"] == "interrupted"
    store.fail(other["id"], "late")  # only a running run can fail
    assert store.get(other["id"])["status"] == "interrupted"


# ---------------------------------------------------------------------------- the command line


def _poem_set(tmp_path: Path, checks: list[dict], **extra) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump({"params": {"temperature": 0.8, "max_tokens": 80}, **extra, "items": [
        {"prompt": "写一首五言绝句，主题：春晓", "checks": checks},
        {"prompt": "写一首五言绝句，主题：山居", "checks": checks}]}, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.slow
def test_cli_prints_stores_and_gates(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    good = _poem_set(tmp_path, [{"regex": "[\u4e00-\u9fff]"}, {"poem_form": "五言绝句", "required": False}])
    assert main(["eval", "run", str(good), "-m", "aigc-poet-zh", "--database-url", url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["set"] == "mini" and out["model"] == "aigc-poet-zh" and out["pass_rate"] == 1.0
    assert out["gate"] is None and out["gate_passed"] and len(out["results"]) == 2
    runs = EvalRunStore(Database(url)).list()
    assert len(runs) == 1 and runs[0]["status"] == "done" and runs[0]["id"] == out["run_id"]
    assert len(EvalRunStore(Database(url)).get(out["run_id"])["results"]) == 2

    failing = _poem_set(tmp_path, [{"exact": "no poem says this"}], gate=0.5)
    assert main(["eval", "run", str(failing), "-m", "aigc-poet-zh", "--database-url", url, "--limit", "1"]) == 1
    text = capsys.readouterr().out
    assert "gate 0.50: NOT met" in text and "0/1" in text and "stored as eval run #2" in text
    assert main(["eval", "run", str(failing), "-m", "aigc-poet-zh", "--database-url", url, "--limit", "1",
                 "--gate", "0"]) == 0  # --gate 0: no gate
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["no-such-set"], "no eval set"),
    (["poem", "--limit", "0"], "--limit must be at least 1"),
    (["poem", "--gate", "1.5"], "--gate is a pass rate"),
    (["poem", "-m", "no-such-model-xyz"], "no-such-model-xyz"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["eval", "run", *args, "--database-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aigc eval: error:") and message in err and "\n" not in err


def test_cli_bad_set_file_is_exit_code_2(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("items:\n  - prompt: hi\n    checks: [{regex: '('}]\n", encoding="utf-8")
    assert main(["eval", "run", str(path), "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "broken.yaml: items[0].checks[0].regex: not a valid regular expression" in capsys.readouterr().err
