"""The configs: one file per row of the papers' tables, each with `get_config(arg)`.

Named by file (`--config=supervised:dataset=digits` or `configs/supervised.py:...`); loaded
by path, never imported as modules (`config_lib.load_config`).
"""
