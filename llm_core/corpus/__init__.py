"""A corpus that grows night after night: its artifact (the snapshots so far, by reference), the state a refresh
carries over from the nights before (previous corpus, pinned tokenizer, champion), the champion pointer and the
`promote` step that moves it."""
