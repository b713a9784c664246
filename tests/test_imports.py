"""The package's import graph: no circles between modules nor between layers (a subpackage
is one layer), and objectives import no other objective.

Every `import` / `from ... import` in a module counts, at module level or inside a function.
"""
import ast
import os

PACKAGE = "s4l_jax"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_modules() -> dict[str, str]:
  """{dotted module name: file path} of every module of the package."""
  modules = {}
  for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for name in files:
      if name.endswith(".py"):
        parts = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(
            folder, name)
  return modules


def imported_modules(path: str, module: str, modules) -> set[str]:
  """Package modules that `module` (file `path`) imports anywhere in its code."""
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative import
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      found.add(base)
      found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
  return {name for name in found if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
  modules = package_modules()
  return {m: imported_modules(path, m, modules) for m, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A list [a, b, ..., a] of modules importing each other in a circle, or None."""
  state, stack = {}, []  # state: 1 = on the current path, 2 = done

  def visit(node):
    state[node] = 1
    stack.append(node)
    for child in sorted(graph[node]):
      if state.get(child) == 1:
        return stack[stack.index(child):] + [child]
      if child not in state and (cycle := visit(child)):
        return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


# objective_lib is the objectives' shared helpers (its docstring), a part of that layer kept
# beside the subpackage.
LAYER_OF = {f"{PACKAGE}.objective_lib": f"{PACKAGE}.objectives"}


def layer(module: str) -> str:
  """The top-level module or subpackage `module` belongs to (`s4l_jax.models.heads` ->
  `s4l_jax.models`)."""
  return ".".join(LAYER_OF.get(module, module).split(".")[:2])


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
  """`graph` with each subpackage's modules merged into one node, edges inside it dropped."""
  layers = {}
  for module, imports in graph.items():
    layers.setdefault(layer(module), set()).update(
        layer(i) for i in imports if layer(i) != layer(module))
  return layers


def test_find_cycle_names_the_circle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_imports_inside_functions():
  graph = import_graph()
  assert "s4l_jax.data.tfds_sources" in graph["s4l_jax.data.sources"]  # lazy, in a function
  assert "s4l_jax.budget" in graph["s4l_jax.train"]


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_layer_graph_sees_a_circle_through_a_subpackage():
  """models/init.py -> export.py -> models/__init__.py: no circle between modules (Python
  imports it), but one between the models layer and export."""
  graph = {"s4l_jax.models": {"s4l_jax.models.heads"}, "s4l_jax.models.heads": set(),
           "s4l_jax.models.init": {"s4l_jax.export"}, "s4l_jax.export": {"s4l_jax.models"}}
  assert find_cycle(graph) is None
  assert find_cycle(layer_graph(graph)) == ["s4l_jax.export", "s4l_jax.models", "s4l_jax.export"]


def test_no_import_cycles_between_layers():
  cycle = find_cycle(layer_graph(import_graph()))
  assert cycle is None, "import circle between layers: " + " -> ".join(cycle)


def test_no_objective_imports_another():
  prefix = f"{PACKAGE}.objectives."
  graph = import_graph()
  offending = {m: sorted(i for i in imports if i.startswith(prefix))
               for m, imports in graph.items() if m.startswith(prefix)}
  offending = {m: imports for m, imports in offending.items() if imports}
  assert not offending, f"objective modules importing other objectives: {offending}"
