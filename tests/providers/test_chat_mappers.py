"""The chat mappers' edge cases: multimodal parts, tool results, reasoning, and odd
shapes that must never raise. Records are built the way the serializer leaves them."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

import tracekit
from tracekit._chat import chat_of
from tracekit._walk import marker
from tracekit.testing import capture

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
PNG_SHA = hashlib.sha256(base64.b64decode(PNG)).hexdigest()
PNG_BLOB = {
    "type": "blob",
    "modality": "image",
    "mime_type": "image/png",
    "content": PNG[:64] + "... " + marker("base64 preview of 1032 bytes"),
    "size_bytes": 1032,
    "sha256": PNG_SHA,
}


def record(inputs: Any, outputs: Any = None, span_type: str = "CHAT_MODEL", **attrs: Any) -> Any:
    return {
        "span_type": span_type,
        "status": {"code": "OK", "message": ""},
        "inputs": inputs,
        "outputs": outputs,
        "attributes": attrs,
    }


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


# -- OpenAI chat ------------------------------------------------------------------------


def test_openai_multimodal_user_message() -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        },
    ]
    chat = chat_of(record({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}))
    assert chat == {
        "input_messages": [
            user(
                text("What is in these?"),
                PNG_BLOB,
                {
                    "type": "uri",
                    "modality": "image",
                    "mime_type": None,
                    "uri": "https://example.com/cat.jpg",
                },
                {
                    "type": "blob",
                    "modality": "audio",
                    "mime_type": "audio/wav",
                    "content": "UklGRg==",
                    "size_bytes": 4,
                    "sha256": hashlib.sha256(b"RIFF").hexdigest(),
                },
                {"type": "file", "modality": "document", "mime_type": None, "file_id": "file-abc"},
                {
                    "type": "blob",
                    "modality": "document",
                    "mime_type": "application/pdf",
                    "content": "JVBERi0=",
                    "size_bytes": 5,
                    "sha256": hashlib.sha256(b"%PDF-").hexdigest(),
                },
            )
        ]
    }


def test_a_payload_the_serializer_cut_keeps_its_size_and_no_digest() -> None:
    cut = PNG[:100] + "... " + marker(f"truncated {len(PNG) - 100} chars")
    url = f"data:image/png;base64,{cut}"
    chat = chat_of(
        record(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
                ]
            }
        )
    )
    assert chat is not None
    (part,) = chat["input_messages"][0]["parts"]
    assert part == {
        "type": "blob",
        "modality": "image",
        "mime_type": "image/png",
        "content": PNG[:64] + "... " + marker("base64 preview of 1032 bytes"),
        "size_bytes": 1032,
    }


def test_openai_roles_tool_results_and_arguments() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"x": 1}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "g", "arguments": "{not json"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "one"}]},
        {"role": "function", "name": "legacy", "content": "old"},
        {"role": "assistant", "function_call": {"name": "h", "arguments": "{}"}},
    ]
    outputs = {
        "choices": [
            {
                "finish_reason": "content_filter",
                "message": {"role": "assistant", "content": None, "refusal": "No."},
            },
            {"finish_reason": None, "message": {"content": "ok", "reasoning_content": "think"}},
        ]
    }
    chat = chat_of(record({"messages": messages}, outputs))
    assert chat == {
        "input_messages": [
            {"role": "system", "parts": [text("Be brief.")]},
            {"role": "user", "parts": [text("hi")], "name": "ann"},
            {
                "role": "assistant",
                "parts": [
                    {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1}},
                    {"type": "tool_call", "id": "c2", "name": "g", "arguments": "{not json"},
                ],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "c1", "response": "one"}],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": None, "response": "old"}],
                "name": "legacy",
            },
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": None, "name": "h", "arguments": {}}],
            },
        ],
        "output_messages": [
            {"role": "assistant", "parts": [text("No.")], "finish_reason": "content_filter"},
            {
                "role": "assistant",
                "parts": [{"type": "reasoning", "content": "think"}, text("ok")],
                "finish_reason": "stop",
            },
        ],
    }


def test_legacy_completion_and_errored_stream() -> None:
    chat = chat_of(
        {
            **record({"prompt": "Say", "model": "x"}, {"choices": [{"text": " hi"}]}, "LLM"),
            "status": {"code": "ERROR", "message": "boom"},
        }
    )
    assert chat == {
        "input_messages": [user(text("Say"))],
        "output_messages": [
            {"role": "assistant", "parts": [text(" hi")], "finish_reason": "error"}
        ],
    }


# -- OpenAI Responses -------------------------------------------------------------------


def test_responses_items_instructions_and_tool_outputs() -> None:
    inputs = {
        "instructions": "Answer in French.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                ],
            },
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [
            {"type": "function", "name": "weather", "parameters": {"type": "object"}},
            {"type": "web_search"},
        ],
    }
    outputs = {
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Easy."}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Ensoleillé."}],
            },
        ],
    }
    assert chat_of(record(inputs, outputs)) == {
        "system_instructions": [text("Answer in French.")],
        "input_messages": [
            user(
                text("Weather?"),
                {"type": "uri", "modality": "image", "mime_type": None, "uri": "https://x/y.png"},
            ),
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "id": "c1",
                        "name": "weather",
                        "arguments": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
            },
        ],
        "output_messages": [
            {
                "role": "assistant",
                "parts": [{"type": "reasoning", "content": "Easy."}, text("Ensoleillé.")],
                "finish_reason": "stop",
            }
        ],
        "tool_definitions": [
            {"type": "function", "name": "weather", "parameters": {"type": "object"}},
            {"type": "web_search", "name": "web_search"},
        ],
    }


def test_responses_incomplete_and_partial_stream() -> None:
    incomplete = {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [],
    }
    chat = chat_of(record({"input": "hi"}, incomplete))
    assert chat is not None
    assert chat["output_messages"] == [
        {"role": "assistant", "parts": [], "finish_reason": "length"}
    ]
    partial = chat_of(record({"input": "hi", "stream": True}, {"output_text": "Hel"}))
    assert partial is not None
    assert partial["output_messages"] == [
        {"role": "assistant", "parts": [text("Hel")], "finish_reason": "stop"}
    ]


# -- Anthropic ---------------------------------------------------------------------------


def test_anthropic_blocks_tool_results_and_thinking() -> None:
    inputs = {
        "system": [{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
                    {"type": "text", "text": "Look.", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "seen"}],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": "bad",
                        "is_error": True,
                    },
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
    }
    outputs = {
        "type": "message",
        "content": [{"type": "text", "text": "Done."}],
        "stop_reason": "max_tokens",
    }
    assert chat_of(record(inputs, outputs, **{"gen_ai.provider.name": "anthropic"})) == {
        "system_instructions": [text("Be kind.")],
        "input_messages": [
            user(
                PNG_BLOB,
                {
                    "type": "uri",
                    "modality": "document",
                    "mime_type": None,
                    "uri": "https://x/a.pdf",
                },
                text("Look."),
            ),
            {
                "role": "assistant",
                "parts": [
                    {"type": "reasoning", "content": "Hmm."},
                    {"type": "reasoning", "content": marker("redacted thinking")},
                    {"type": "tool_call", "id": "t1", "name": "look", "arguments": {"q": 1}},
                ],
            },
            {
                "role": "tool",
                "parts": [
                    {"type": "tool_call_response", "id": "t1", "response": "seen"},
                    {"type": "tool_call_response", "id": "t2", "response": "bad"},
                ],
            },
            user(text("And?")),
        ],
        "output_messages": [
            {"role": "assistant", "parts": [text("Done.")], "finish_reason": "length"}
        ],
    }


# -- Gemini ------------------------------------------------------------------------------


def test_gemini_parts_thoughts_and_camel_case() -> None:
    inputs = {
        "model": "gemini-2.5-flash",
        "contents": [
            "Describe",
            {"inlineData": {"data": PNG, "mimeType": "image/png"}},
            {"file_data": {"file_uri": "gs://b/v.mp4", "mime_type": "video/mp4"}},
            {"file_data": {"file_uri": "files/abc", "mime_type": "application/pdf"}},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"r": 2}}}]},
        ],
        "config": {"system_instruction": {"parts": [{"text": "Be terse."}]}},
    }
    outputs = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "Plan.", "thought": True}, {"text": "A cat."}],
                },
                "finish_reason": "SAFETY",
            }
        ]
    }
    assert chat_of(record(inputs, outputs)) == {
        "system_instructions": [text("Be terse.")],
        "input_messages": [
            user(
                text("Describe"),
                PNG_BLOB,
                {
                    "type": "uri",
                    "modality": "video",
                    "mime_type": "video/mp4",
                    "uri": "gs://b/v.mp4",
                },
                {
                    "type": "file",
                    "modality": "document",
                    "mime_type": "application/pdf",
                    "file_id": "files/abc",
                },
            ),
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": None, "name": "f", "arguments": {"a": 1}}],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": None, "response": {"r": 2}}],
            },
        ],
        "output_messages": [
            {
                "role": "assistant",
                "parts": [{"type": "reasoning", "content": "Plan."}, text("A cat.")],
                "finish_reason": "content_filter",
            }
        ],
    }


def test_gemini_python_function_tools_are_named() -> None:
    config = {
        "tools": ["<function get_weather at 0x7f00>", {"google_search": {}, "retrieval": None}]
    }
    chat = chat_of(record({"contents": "hi", "config": config}))
    assert chat is not None
    assert chat["tool_definitions"] == [
        {"type": "function", "name": "get_weather"},
        {"type": "google_search", "name": "google_search"},
    ]


# -- LangChain ---------------------------------------------------------------------------


def lc(kind: str, content: Any, **fields: Any) -> dict[str, Any]:
    return {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": kind,
        "name": None,
        "id": None,
        **fields,
    }


def test_langchain_messages_and_generations() -> None:
    messages = [
        lc("system", "Sys."),
        lc(
            "human",
            [
                {"type": "text", "text": "See"},
                {"type": "image", "source_type": "url", "url": "https://x/i.png"},
            ],
        ),
        lc(
            "ai",
            "",
            tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1", "type": "tool_call"}],
        ),
        lc("tool", "2", tool_call_id="c1"),
        lc("chat", "custom", role="developer"),
    ]
    generation = {
        "text": "",
        "generation_info": None,
        "type": "ChatGeneration",
        "message": lc(
            "ai",
            "Two.",
            additional_kwargs={"reasoning_content": "1+1"},
            response_metadata={"stop_reason": "end_turn"},
        ),
    }
    chat = chat_of(
        record({"messages": [messages]}, {"generations": [[generation]], "type": "LLMResult"})
    )
    assert chat == {
        "input_messages": [
            {"role": "system", "parts": [text("Sys.")]},
            user(
                text("See"),
                {"type": "uri", "modality": "image", "mime_type": None, "uri": "https://x/i.png"},
            ),
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": "c1", "name": "add", "arguments": {"a": 1}}],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "c1", "response": "2"}],
            },
            {"role": "system", "parts": [text("custom")]},
        ],
        "output_messages": [
            {
                "role": "assistant",
                "parts": [{"type": "reasoning", "content": "1+1"}, text("Two.")],
                "finish_reason": "stop",
            }
        ],
    }


def test_langchain_llm_prompts() -> None:
    chat = chat_of(record({"prompts": ["Once"]}, {"generations": [[{"text": " upon"}]]}, "LLM"))
    assert chat == {
        "input_messages": [user(text("Once"))],
        "output_messages": [
            {"role": "assistant", "parts": [text(" upon")], "finish_reason": "stop"}
        ],
    }


# -- what is not a chat, and odd shapes ------------------------------------------------------


def test_not_a_chat() -> None:
    assert chat_of(record({"messages": []}, None)) is None
    assert chat_of(record({"q": "x"}, {"a": 1})) is None
    assert (
        chat_of(record({"messages": [{"role": "user", "content": "hi"}]}, span_type="TOOL")) is None
    )
    assert chat_of(record(None)) is None
    assert chat_of({}) is None


_KEYS = [
    "messages",
    "contents",
    "input",
    "instructions",
    "prompt",
    "prompts",
    "system",
    "tools",
    "config",
    "role",
    "content",
    "parts",
    "type",
    "text",
    "tool_calls",
    "function",
    "arguments",
    "image_url",
    "url",
    "source",
    "data",
    "inline_data",
    "file_data",
    "function_call",
    "function_response",
    "candidates",
    "choices",
    "message",
    "generations",
    "output",
    "status",
    "finish_reason",
    "stop_reason",
    "thought",
    "name",
    "id",
    "call_id",
    "tool_call_id",
]
_TYPES = [
    "text",
    "image_url",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "function_call",
    "reasoning",
    "message",
    "input_image",
    "file",
    "document",
    "audio",
    "input_audio",
    "human",
    "ai",
]


def _odd(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.25:
        return rng.choice(
            [
                None,
                0,
                1.5,
                True,
                "",
                "x",
                "data:image/png;base64,AAAA",
                "{",
                "[]",
                rng.choice(_TYPES),
            ]
        )
    if roll < 0.5:
        return [_odd(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(_KEYS): _odd(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_odd_shapes_never_raise() -> None:
    rng = random.Random(15)  # noqa: S311 - reproducible shapes, not secrets
    for _ in range(3000):
        inputs, outputs = _odd(rng), _odd(rng)
        if isinstance(inputs, dict) and rng.random() < 0.5:
            inputs[rng.choice(["messages", "contents", "input", "prompts"])] = _odd(rng)
        chat = chat_of(
            record(inputs, outputs, **{"gen_ai.provider.name": rng.choice(["openai", "anthropic"])})
        )
        assert chat is None or chat.get("input_messages") or chat.get("output_messages")


# -- the export worker: on for LLM spans, off without content capture -------------------------


def _export(**settings: Any) -> dict[str, Any]:
    with capture(**settings) as captured:
        with tracekit.start_span(
            "chat m",
            span_type="CHAT_MODEL",
            inputs={"messages": [{"role": "user", "content": "hi"}]},
        ) as span:
            span.set_outputs(
                {
                    "choices": [
                        {"message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}
                    ]
                }
            )
        with tracekit.start_span(
            "step", span_type="CHAIN", inputs={"messages": [{"role": "user", "content": "hi"}]}
        ):
            pass
    chat_span, chain = [t["spans"][0] for t in captured.traces]
    assert "chat" not in chain
    return chat_span


def test_the_record_of_a_chat_span_carries_its_chat() -> None:
    assert _export()["chat"] == {
        "input_messages": [user(text("hi"))],
        "output_messages": [{"role": "assistant", "parts": [text("yo")], "finish_reason": "stop"}],
    }


def test_no_chat_without_content_capture() -> None:
    assert "chat" not in _export(capture_content=False)


def test_a_manual_chat_span_with_a_string_answer() -> None:
    chat = chat_of(record({"messages": [{"role": "user", "content": "hi"}]}, "Hello."))
    assert chat == {
        "input_messages": [user(text("hi"))],
        "output_messages": [
            {"role": "assistant", "parts": [text("Hello.")], "finish_reason": "stop"}
        ],
    }


def _one_span(messages: Any, **settings: Any) -> dict[str, Any]:
    with capture(**settings) as captured:
        chat = tracekit.start_span("chat m", span_type="CHAT_MODEL", inputs={"messages": messages})
        with chat:
            pass
    (span,) = captured.traces[0]["spans"]
    return span


def test_the_chat_is_read_from_what_span_processors_left() -> None:
    def redact(span: dict[str, Any]) -> dict[str, Any]:
        span["inputs"] = json.loads(
            json.dumps(span["inputs"]).replace("ann@example.com", "[email]")
        )
        return span

    def fail(span: dict[str, Any]) -> None:
        raise RuntimeError("processor bug")

    messages = [{"role": "user", "content": "I am ann@example.com"}]
    span = _one_span(messages, span_processors=[redact])
    assert span["chat"] == {"input_messages": [user(text("I am [email]"))]}
    span = _one_span(messages, span_processors=[fail])
    assert span["inputs"] == marker("removed, a span processor failed")
    assert "chat" not in span


def test_built_in_tool_calls_and_generated_images() -> None:
    outputs = {
        "status": "completed",
        "output": [
            {
                "type": "web_search_call",
                "id": "ws1",
                "status": "completed",
                "action": {"query": "q"},
            },
            {"type": "image_generation_call", "id": "ig1", "status": "completed", "result": PNG},
        ],
    }
    chat = chat_of(record({"input": "draw"}, outputs))
    assert chat is not None
    assert chat["output_messages"] == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "ws1",
                    "name": "web_search",
                    "arguments": {"action": {"query": "q"}},
                },
                {"type": "tool_call", "id": "ig1", "name": "image_generation", "arguments": {}},
                PNG_BLOB,
            ],
            "finish_reason": "tool_call",
        }
    ]


def test_langchain_ai_content_blocks_and_tool_calls_count_once() -> None:
    ai = lc(
        "ai",
        [
            {"type": "thinking", "thinking": "Plan."},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}},
            {"type": "mcp_tool_use", "id": "m1", "name": "fetch", "input": {}, "server_name": "s"},
        ],
        tool_calls=[{"name": "look", "args": {"q": 1}, "id": "t1", "type": "tool_call"}],
    )
    chat = chat_of(record({"messages": [[lc("human", "hi"), ai]]}))
    assert chat is not None
    assert chat["input_messages"][1] == {
        "role": "assistant",
        "parts": [
            {"type": "reasoning", "content": "Plan."},
            text("Let me look."),
            {"type": "tool_call", "id": "t1", "name": "look", "arguments": {"q": 1}},
            {"type": "tool_call", "id": "m1", "name": "fetch", "arguments": {}},
        ],
    }


def test_gemini_uploaded_file_as_a_part() -> None:
    uploaded = {
        "name": "files/abc",
        "uri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
        "mime_type": "audio/mpeg",
    }
    chat = chat_of(record({"contents": ["Transcribe", uploaded]}))
    assert chat == {
        "input_messages": [
            user(
                text("Transcribe"),
                {
                    "type": "file",
                    "modality": "audio",
                    "mime_type": "audio/mpeg",
                    "file_id": "files/abc",
                },
            )
        ]
    }


def test_a_file_sent_as_bare_base64_is_a_blob_too() -> None:
    block = {"type": "input_file", "filename": "a.pdf", "file_data": "JVBERi0="}
    chat = chat_of(record({"input": [{"role": "user", "content": [block]}]}))
    assert chat is not None
    assert chat["input_messages"][0]["parts"] == [
        {
            "type": "blob",
            "modality": "document",
            "mime_type": None,
            "content": "JVBERi0=",
            "size_bytes": 5,
            "sha256": hashlib.sha256(b"%PDF-").hexdigest(),
        }
    ]


def test_an_image_a_tool_returned_is_a_bounded_blob() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    result = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "text", "text": "Here:"}, image],
    }
    chat = chat_of(
        record(
            {"messages": [{"role": "user", "content": [result]}]},
            **{"gen_ai.provider.name": "anthropic"},
        )
    )
    assert chat == {
        "input_messages": [
            {
                "role": "tool",
                "parts": [
                    {
                        "type": "tool_call_response",
                        "id": "t1",
                        "response": [text("Here:"), PNG_BLOB],
                    }
                ],
            }
        ]
    }
