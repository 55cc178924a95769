"""Tools a chat model calls during generation: a sandboxed Python interpreter (`python_tool`) and a search over the
pipeline's own corpus (`search_tool`, over the `index` stage's artifact). Each is a `base.Tool`: the text of one call
in, the text the model reads back out, never an exception."""
