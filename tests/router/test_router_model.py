"""The fake model: echo, script, n, stop, max_tokens, tools, reasoning, honest usage."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_router import FakeModel, count_tokens, minimal_instance
from mock_router.validation import Refusal


def chat(text: str = "hello world", **params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": text}], **params}


def complete(req: dict[str, Any], model: FakeModel | None = None) -> dict[str, Any]:
    return (model or FakeModel()).complete(req, completion_id="chatcmpl-x", created=1)


def check_usage(out: dict[str, Any], req: dict[str, Any]) -> None:
    u = out["usage"]
    assert u["prompt_tokens"] + u["completion_tokens"] == u["total_tokens"]
    prompt = sum(count_tokens(m["content"]) for m in req["messages"])
    assert u["prompt_tokens"] == prompt
    done = 0
    for c in out["choices"]:
        m = c["message"]
        done += count_tokens(m.get("content")) + count_tokens(m.get("reasoning_content"))
        for call in m.get("tool_calls") or []:
            done += count_tokens(call["function"]["name"])
            done += count_tokens(call["function"]["arguments"])
    assert u["completion_tokens"] == done


def test_echoes_last_user_message():
    req = chat("What is 2+2?")
    out = complete(req)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "What is 2+2?"}
    assert out["choices"][0]["finish_reason"] == "stop"
    check_usage(out, req)
    assert out["usage"]["completion_tokens"] == 6  # What is 2 + 2 ?


def test_list_content_text_parts():
    req = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a b"}, {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "c"}]}]}
    assert complete(req)["choices"][0]["message"]["content"] == "a b c"


def test_n_choices_are_distinct():
    req = chat("hi there", n=3)
    out = complete(req)
    contents = [c["message"]["content"] for c in out["choices"]]
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert len(set(contents)) == 3
    check_usage(out, req)


def test_max_tokens_truncates_with_length():
    req = chat("one two three four five", max_tokens=2)
    out = complete(req)
    assert out["choices"][0]["message"]["content"] == "one two"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 2


def test_max_tokens_not_reached_is_stop():
    out = complete(chat("one two", max_tokens=2))
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["message"]["content"] == "one two"


@pytest.mark.parametrize(("stop", "expected"), [("three", "one two "), (["x", "two"], "one "),
                                                ([], "one two three")])
def test_stop_sequences(stop, expected):
    out = complete(chat("one two three", stop=stop))
    assert out["choices"][0]["message"]["content"] == expected
    assert out["choices"][0]["finish_reason"] == "stop"


def test_script_list_cycles_and_callable():
    model = FakeModel(["first", "second"])
    got = [complete(chat(), model)["choices"][0]["message"]["content"] for _ in range(3)]
    assert got == ["first", "second", "first"]
    model = FakeModel(lambda req, i: f"{req['model']}#{i}")
    out = complete(chat(n=2), model)
    assert [c["message"]["content"] for c in out["choices"]] == ["m#0", "m#1"]


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "detailed": {"type": "boolean"}},
    "required": ["city", "unit", "days"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}


@pytest.mark.parametrize(("text", "choice", "called"), [
    ("call get_weather please", None, "get_weather"),
    ("call GET_TIME please", "auto", "get_time"),
    ("just talk", "auto", None),
    ("call get_weather please", "none", None),
    ("just talk", "required", "get_weather"),
    ("what about get_time", "required", "get_time"),
    ("just talk", {"type": "function", "function": {"name": "get_time"}}, "get_time"),
])
def test_tool_choice_rule(text, choice, called):
    params: dict[str, Any] = {"tools": [WEATHER, TIME]}
    if choice is not None:
        params["tool_choice"] = choice
    req = chat(text, **params)
    out = complete(req)
    choice0 = out["choices"][0]
    if called is None:
        assert "tool_calls" not in choice0["message"]
        assert choice0["finish_reason"] == "stop"
    else:
        call = choice0["message"]["tool_calls"][0]
        assert choice0["finish_reason"] == "tool_calls"
        assert choice0["message"]["content"] is None
        assert call["type"] == "function"
        assert call["id"].startswith("call_")
        assert call["function"]["name"] == called
        schema = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
        jsonschema.validate(json.loads(call["function"]["arguments"]), schema[called])
    check_usage(out, req)


def test_weather_arguments_are_minimal():
    out = complete(chat("get_weather", tools=[WEATHER]))
    args = json.loads(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert args == {"city": "aa", "unit": "celsius", "days": 1}


@pytest.mark.parametrize("model_name", ["deepseek-r1", "qwen3-thinking", "my-THINK-model"])
def test_reasoning_models(model_name):
    req = {**chat(), "model": model_name}
    out = complete(req)
    assert out["choices"][0]["message"]["reasoning_content"]
    check_usage(out, req)


def test_reasoning_flag_and_plain_model():
    assert "reasoning_content" not in complete(chat())["choices"][0]["message"]
    assert complete(chat(), FakeModel(reasoning=True))["choices"][0]["message"][
        "reasoning_content"]


def test_bad_parameters_refused():
    for params in ({"n": 0}, {"n": True}, {"max_tokens": -1}, {"stop": [1]},
                   {"tool_choice": "required"}):
        with pytest.raises(Refusal) as info:
            complete(chat(**params))
        assert info.value.status == 400


SCHEMAS = st.deferred(lambda: st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean",
                                                     "null"])},
                          optional={"minLength": st.integers(0, 10),
                                    "minimum": st.integers(-50, 50),
                                    "exclusiveMinimum": st.integers(-50, 50),
                                    "multipleOf": st.integers(1, 7)}),
    st.fixed_dictionaries({"enum": st.lists(st.integers() | st.text(), min_size=1)}),
    st.builds(lambda props, req: {"type": "object", "properties": props,
                                  "required": [k for k in props if req]},
              st.dictionaries(st.text(min_size=1, max_size=5), SCHEMAS, max_size=4),
              st.booleans()),
    st.builds(lambda items, n: {"type": "array", "items": items, "minItems": n},
              SCHEMAS, st.integers(0, 3)),
    st.builds(lambda a, b: {"anyOf": [a, b]}, SCHEMAS, SCHEMAS),
))


@settings(max_examples=200, deadline=None)
@given(SCHEMAS)
def test_minimal_instance_is_valid(schema):
    jsonschema.validate(minimal_instance(schema), schema)
