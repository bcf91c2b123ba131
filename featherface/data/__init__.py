"""WIDER FACE data: readers and writers, the synthetic generator, validation, datasets."""
