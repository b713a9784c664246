"""Augmentation ops by family, each registered by decorator in `registry`: `crops` (crop ops and
their tf.data twins; `resize` the resizes they use), `geometry`, `colour`, `simclr`, `pretext`,
`randaugment` (FixMatch's ops). `views` imports every family, which registers them.
"""
