"""Example samat plugin: the ``example_blobs`` task (see ``samat_example.task``)."""

__version__ = "0.1.0"
