"""The web chat (`llmpipe web`): a FastAPI app serving one page for chatting with the store's model artifacts,
streaming replies and the tools they call, an arena whose votes become rankings rows, and a leaderboard.

- `models`: which models are served (`default_chat_model`), what the picker shows of them, their engines;
- `worker`: the one engine worker and its bounded queue;
- `arena`: battles, votes as rankings rows, the Bradley-Terry leaderboard;
- `app`: the HTTP API, the token check and the static page (`static/`).
"""
