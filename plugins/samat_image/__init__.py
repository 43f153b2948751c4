"""Image classification plugin: datasets (``data``), models (``models``), the task (``task``)
and the paper's attacks (``attacks``). Importing this package imports none of them."""
