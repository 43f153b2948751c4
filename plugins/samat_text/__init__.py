"""samat text plugin: Hugging Face sentence classifiers attacked with TextAttack (PSO, IGA)."""
