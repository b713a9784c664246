"""Trains one row of the papers' tables: `s4l_jax.train_main` (the `s4l-train` command).

    python main.py --config=configs/supervised.py:dataset=digits --workdir=/tmp/sup
"""
from s4l_jax import train_main

if __name__ == "__main__":
  train_main.run()
