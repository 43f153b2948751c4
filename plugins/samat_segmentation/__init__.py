"""samat segmentation plugin: DeepLabv3 on VOC 2012, Stanford Background and embedded shapes."""
