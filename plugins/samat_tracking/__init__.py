"""samat's built-in experiment loggers: TensorBoard, Weights & Biases and MLflow.

Each is a plugin object on top of the run events (``samat_on_*`` hooks), selected by the
recipe's ``logging:`` list (docs/tracking.md). They work offline: TensorBoard event files and an
MLflow file store under the run directory, W&B in offline mode unless told otherwise.
"""
