"""sae-bench harness: the engine (models, tokens, activations, SAEs, training, evaluation)."""
