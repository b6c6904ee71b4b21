#!/usr/bin/env python3
"""The crate's import graph: which module names which (`use crate::…` and inline `crate::…`
paths), its circles, and the edges that run against the layer order.

    python3 .ci/imports.py            # prints circles and upward edges; exit 1 if any circle
    python3 .ci/imports.py --graph    # also every edge

A module is a file (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`). An edge between a folder's
`mod.rs` and its own children is not counted: a parent declares and re-exports its children,
and children reach their siblings' shared items through it. Comments and strings are not
read as code. Layers are listed in LAYERS, lowest first; an edge from a module to one in a
higher layer is reported (a warning: the circles are what fail).
"""
import os
import re
import sys
from collections import defaultdict

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lowest first. A module belongs to the first entry that is a prefix of its path.
LAYERS = [
    ["clock", "error", "job::failure", "store"],
    ["job"],
    ["client", "config"],
    ["plugins"],
    ["extensions"],
    ["server"],
    ["api"],
    ["testing"],
    ["web"],
    ["command", "demo"],
    ["cli"],
    ["bin"],
]


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return "::".join(rel)


def strip(text):
    """Code without comments, string and char literals (raw strings included)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:]):
            i += re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [tree.strip()]
    head, body = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    out = []
    for part in parts:
        if part.strip():
            out += [head + p for p in expand_use(part)]
    return out


def main():
    modules = {}
    for root, _, files in os.walk(SRC):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                modules[module_of(path)] = path
    known = set(modules)

    # What the crate root re-exports (`pub use extensions::batch;`, `pub use client::Client;`):
    # `crate::batch::…` is `crate::extensions::batch::…`.
    aliases = {}
    root = strip(open(os.path.join(SRC, "lib.rs"), encoding="utf-8").read())
    for tree in re.findall(r"\bpub\s+use\s+(?:crate::)?(.*?);", root, flags=re.S):
        for full in expand_use(tree):
            alias = full.split(" as ")[-1].split("::")[-1].strip()
            aliases[alias] = full.split(" as ")[0].strip()

    def resolve(path):
        head, _, rest = path.partition("::")
        if head not in known and head in aliases:
            path = aliases[head] + ("::" + rest if rest else "")
        parts = path.split("::")
        for n in range(len(parts), 0, -1):
            candidate = "::".join(parts[:n])
            if candidate in known:
                return candidate
        return None

    edges = defaultdict(set)
    for module, path in modules.items():
        code = strip(open(path, encoding="utf-8").read())
        paths = []
        for tree in re.findall(r"\buse\s+crate::(.*?);", code, flags=re.S):
            paths += [p.split(" as ")[0] for p in expand_use(tree)]
        paths += re.findall(r"(?<![:\w])crate::((?:\w+::)*\w+)", code)
        for p in paths:
            target = resolve(p.strip())
            if not target or target == module or target == "":
                continue
            parent_child = target.startswith(module + "::") or module.startswith(target + "::")
            if parent_child and (module.count("::") - target.count("::")) in (1, -1):
                continue
            edges[module].add(target)

    # Circles: strongly connected components of more than one module (Tarjan).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(known):
        if v not in index:
            visit(v)

    def layer(module):
        # The longest entry that is the module or a folder holding it.
        best, found = -1, None
        for i, names in enumerate(LAYERS):
            for name in names:
                if (module == name or module.startswith(name + "::")) and len(name) > best:
                    best, found = len(name), i
        return found

    upward = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            la, lb = layer(a), layer(b)
            if la is not None and lb is not None and lb > la:
                upward.append((a, b))

    if "--graph" in sys.argv:
        for a in sorted(edges):
            print(f"{a} -> {', '.join(sorted(edges[a]))}")
    print(f"{len(known)} modules, {sum(len(v) for v in edges.values())} edges")
    for comp in sccs:
        print("circle:", " <-> ".join(comp))
    for a, b in upward:
        print(f"upward: {a} -> {b}")
    print(f"{len(sccs)} circles, {len(upward)} upward edges")
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
