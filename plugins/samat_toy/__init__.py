"""The binary robust/non-robust feature model of the paper's Section 4.

``samat_toy.theory`` holds its exact theory (numpy/scipy only); ``samat_toy.task`` the trainable
linear task (torch). This package imports neither, so importing it stays cheap.
"""
