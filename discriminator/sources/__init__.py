"""Model sources `kit build` resolves: Hugging Face, user Python factories, kit checkpoints."""
