"""llm_core: the work of the pipeline (configs, artifact store, data stages, tokenizer, model, training).

Plain Python and PyTorch; nothing here imports Prefect.
"""

__version__ = "0.1.0"
