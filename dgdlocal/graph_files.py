"""`--topology-file PATH`: a communication graph from a file, turned into a mixing matrix.

Formats, chosen by the file name's ending:

- edge list text (any other ending, e.g. .txt, .edges, .csv): one edge `i j` per
  line, separated by spaces, tabs or a comma; anything after the first two fields
  (a weight) is ignored; `#` starts a comment. Read without networkx.
- .graphml, .gml, .gexf, .adjlist: read with networkx (`pip install 'dgdlocal[graphs]'`).

The graph is undirected: a directed edge i→j makes i and j neighbours, self-loops
and repeated edges are dropped, edge weights in the file are ignored. Node ↔ rank:
when the node labels are exactly the integers 0..J−1 (or their decimal strings,
as GraphML and adjacency lists store them), node j is rank j; otherwise the nodes
are relabelled in sorted order (numerically when every label is an integer), so
rank j is the j-th smallest label. The graph must have exactly J nodes and be
connected. The --weight-rule then gives the weights and the --weight-transform
applies (topology.rule_network), exactly as for the built-in topologies.
"""

from __future__ import annotations

import os

import numpy as np

from . import topology
from .errors import InputError

NETWORKX_FORMATS = (".graphml", ".gml", ".gexf", ".adjlist")


def _read_edge_list(path: str) -> tuple[list, list]:
    """(nodes, edges) of a text edge list; labels kept as strings."""
    nodes, edges = {}, []
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.split("#", 1)[0].replace(",", " ").split()
            if not line:
                continue
            if len(line) == 1:
                nodes.setdefault(line[0], None)  # an isolated node
                continue
            a, b = line[:2]
            nodes.setdefault(a, None)
            nodes.setdefault(b, None)
            edges.append((a, b))
    return list(nodes), edges


def _read_with_networkx(path: str) -> tuple[list, list]:
    try:
        import networkx
    except ImportError:
        raise InputError(f"Reading '{path}' needs networkx: pip install 'dgdlocal[graphs]' "
                         "(or give the graph as a text edge list, one 'i j' per line).") from None
    reader = {".graphml": networkx.read_graphml, ".gml": lambda p: networkx.read_gml(p, label="id"),
              ".gexf": networkx.read_gexf, ".adjlist": networkx.read_adjlist}[os.path.splitext(path)[1].lower()]
    try:
        graph = reader(path)
    except Exception as exc:  # noqa: BLE001 - networkx raises many types for a malformed file
        raise InputError(f"The topology file '{path}' could not be read by networkx ({type(exc).__name__}: {exc}).") from None
    return list(graph.nodes), list(graph.edges)


def _as_int(label):
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label)
    try:
        return int(str(label).strip())
    except ValueError:
        return None


def rank_labels(nodes: list) -> list:
    """The node labels in rank order: 0..J−1 themselves, else sorted (numerically if all are integers)."""
    integers = [_as_int(label) for label in nodes]
    if all(i is not None for i in integers):
        order = sorted(range(len(nodes)), key=lambda k: integers[k])
    else:
        order = sorted(range(len(nodes)), key=lambda k: str(nodes[k]))
    return [nodes[k] for k in order]


def read_adjacency(path: str) -> tuple[np.ndarray, list]:
    """Boolean symmetric adjacency (False diagonal) of the graph in `path`, and the node label of each rank."""
    if not os.path.exists(path):
        raise InputError(f"The topology file '{path}' does not exist.")
    try:
        if path.lower().endswith(NETWORKX_FORMATS):
            nodes, edges = _read_with_networkx(path)
        else:
            nodes, edges = _read_edge_list(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"The topology file '{path}' could not be read as text ({exc}).") from None
    if not nodes:
        raise InputError(f"The topology file '{path}' holds no nodes or edges.")
    labels = rank_labels(nodes)
    index = {label: j for j, label in enumerate(labels)}
    if len(index) != len(labels):
        raise InputError(f"The topology file '{path}' has node labels that collide ({labels}).")
    A = np.zeros((len(labels), len(labels)), dtype=bool)
    for a, b in edges:
        i, j = index[a], index[b]
        if i != j:
            A[i, j] = A[j, i] = True
    return A, labels


def network_from_file(path: str, J: int, *, rule: str = "metropolis",
                      transform: str = "shift") -> tuple[topology.Network, list[str]]:
    """The Network for the graph in `path` on J ranks (weights by `rule`, then the --weight-transform) and any
    warnings."""
    A, labels = read_adjacency(path)
    if len(labels) != J:
        raise InputError(f"The topology file '{path}' has {len(labels)} nodes but the job has J={J} ranks; "
                         f"start it with mpirun -n {len(labels)} (or --simulate {len(labels)}).")
    relabelled = [_as_int(label) for label in labels] != list(range(J))
    try:
        W = topology.validate_weights(topology.mixing_weights(A, rule), J)
    except InputError as exc:
        mapping = ""
        if relabelled:
            shown = ", ".join(f"{j}={label}" for j, label in enumerate(labels[:8])) + (", ..." if J > 8 else "")
            mapping = f" (ranks are the nodes in sorted order: {shown})"
        raise InputError(f"The topology file '{path}': {exc}{mapping}") from None
    network = topology.rule_network(W, f"file {os.path.basename(path)}", transform)
    warnings = []
    if relabelled:
        warnings.append(f"The nodes of '{path}' are not 0..{J - 1}; rank j is the j-th node in sorted order "
                        f"({', '.join(map(str, labels[:4]))}{', ...' if J > 4 else ''}).")
    return network, warnings
