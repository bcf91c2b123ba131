"""The procedural WIDER-FACE-like data set: drawn faces with exact landmarks in cluttered scenes.

:func:`generate_split` writes a split's JPEG files and returns its canonical tables;
:func:`assign_keep_lists` fills the easy/medium/hard keep columns by the rules of
:mod:`featherface.data.synthetic.difficulty`.
"""

from featherface.data.synthetic.difficulty import assign_keep_lists
from featherface.data.synthetic.generator import generate_split
from featherface.params import SyntheticConfig

__all__ = ["SyntheticConfig", "assign_keep_lists", "generate_split"]
