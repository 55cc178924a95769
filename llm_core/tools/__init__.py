"""Tools a chat model calls during generation: a sandboxed Python interpreter (`python_tool`) and a search over the
pipeline's own corpus (`search_tool`, over the `index` stage's artifact). Each is a `base.Tool`: the text of one call
in, the text the model reads back out, never an exception.

A new tool = 1 new file + 1 line in `registry.TOOLS` (and its name in `tokenizer.base.TOOL_NAMES`, whose order fixes
the tokenizer's special ids: a tokenizer must be trained with the new call tokens for a model to call it). The file
declares a `ToolSpec`: its name (the call tokens are `<|name_start|>` and `<|name_end|>`), how it opens from
`ToolInputs` (the `index` artifact's reader, per-tool limits) and the artifact stage it needs. The SFT data, the eval,
the engine and the chat CLI and web then offer it. For example, `llm_core/tools/clock_tool.py`:

    class ClockTool:
        \"\"\"The `clock` tool: the UTC time, whatever the call says.\"\"\"

        name = "clock"

        def __call__(self, call: str) -> str:
            return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


    SPEC = ToolSpec("clock", lambda inputs: ClockTool())

and in `registry.py`, `clock_tool.SPEC,` in `TOOLS`.
"""
