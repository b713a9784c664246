"""The configs: one file per row of the papers' tables, each with `get_config(arg)`, and the
recipes they share (`common.py`, no config).

Named by file (`--config=supervised:dataset=digits` or `configs/supervised.py:...`); loaded
by path, never imported as modules (`config_lib.load_config`).
"""
