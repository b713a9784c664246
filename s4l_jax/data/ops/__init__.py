"""Augmentation ops by family, each registered by decorator in `registry` (importing this
package registers them all): `crops` (crop ops and their tf.data twins; `resize` the resizes
they use), `geometry`, `colour`, `simclr`, `pretext`, `randaugment` (FixMatch's ops).
"""
from s4l_jax.data.ops import colour, crops, geometry, pretext, randaugment, registry, simclr  # pylint: disable=unused-import
