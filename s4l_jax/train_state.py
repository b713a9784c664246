"""The training state pytree."""
from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jax.Array         # int32 scalar: number of updates applied
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any         # Polyak average of params ({} when EMA is off)
  objective_state: Any    # the objective's aux["state"] ({} for most objectives)

  def eval_variables(self, use_ema: bool) -> dict:
    params = self.ema_params if use_ema else self.params
    return {"params": params, "batch_stats": self.batch_stats}


def create(variables, tx, use_ema: bool, objective_state=None) -> TrainState:
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if use_ema else {},
      objective_state={} if objective_state is None else objective_state)
