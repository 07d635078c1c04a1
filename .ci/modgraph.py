#!/usr/bin/env python3
"""The import graph of a crate's modules, at every depth: which module names which
(`crate::`, `super::` and `self::` paths, and `use ...::{x, ...}` groups), the cycles, the
depth-first back-edges, and the layers of the top level (each module above everything it
imports).

The modules are found from the crate root by following its `mod x;` declarations (so a
library and a binary sharing src/ are told apart). Every folder is checked on its own: an
import from a/b/c.rs of a/d/e is an edge b -> d inside folder a; a folder's own file
(a/mod.rs or a.rs) and the items it defines are the folder itself, not a node. Comments,
`#[cfg(test)]` modules (inline or in their own file) and `#[cfg(test)] use` lines are ignored:
they are not part of the built crate's structure.

usage: modgraph.py [CRATE_ROOT ...] [--check]
  CRATE_ROOT: a crate's root file (src/lib.rs, src/main.rs) or a directory holding lib.rs
  [default: src/lib.rs]. --check: exit 1 if there is a cycle at any depth.
"""
import os
import re
import sys

TEST_MOD_FILE = re.compile(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;')
TEST_MOD_INLINE = re.compile(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{')
TEST_USE = re.compile(r'#\[cfg\(test\)\]\s*use\s[^;]*;')
MOD_DECL = re.compile(r'(?:^|[;}\]\s])(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;')
PATH = re.compile(r'\b(crate|super|self)((?:::\w+)+)(::\{)?')


def strip_comments(text):
    """Drops `//` comments (line, doc and trailing), leaving string literals alone."""
    out = []
    for line in text.split('\n'):
        in_str = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if in_str:
                if c == '\\':
                    i += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif line.startswith('//', i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return '\n'.join(out)


def drop_inline_test_modules(text):
    """Removes `#[cfg(test)] mod x { ... }` blocks by brace matching."""
    while True:
        m = TEST_MOD_INLINE.search(text)
        if not m:
            return text
        depth = 0
        end = len(text)
        for j in range(m.end() - 1, len(text)):
            if text[j] == '{':
                depth += 1
            elif text[j] == '}':
                depth -= 1
                if depth == 0:
                    end = j + 1
                    break
        text = text[:m.start()] + text[end:]


def source(path):
    """A file's text as the built crate sees it: no comments, no test modules or uses."""
    text = strip_comments(open(path, encoding='utf-8').read())
    text = TEST_MOD_FILE.sub('', text)
    return TEST_USE.sub('', drop_inline_test_modules(text))


def modules(root):
    """Every module reachable from the crate root: {module path (a tuple): file}."""
    found = {(): root}
    todo = [((), root)]
    while todo:
        path, file = todo.pop()
        name = os.path.basename(file)
        here = os.path.dirname(file)
        if name not in ('mod.rs', 'lib.rs', 'main.rs'):
            here = os.path.join(here, name[:-3])
        for child in MOD_DECL.findall(source(file)):
            for candidate in (os.path.join(here, child + '.rs'),
                              os.path.join(here, child, 'mod.rs')):
                if os.path.isfile(candidate):
                    found[path + (child,)] = candidate
                    todo.append((path + (child,), candidate))
                    break
    return found


def group_items(group):
    """The paths of a `{...}` group's items (depth 0 only; nested groups keep their head)."""
    items, depth, item = [], 0, ''
    for c in group + ',':
        if c == '{':
            depth += 1
        elif c == '}':
            depth -= 1
        if depth == 0 and c == ',':
            path = re.match(r'\s*(\w+(?:::\w+)*)', item)
            if path:
                items.append(tuple(path.group(1).split('::')))
            item = ''
        else:
            item += c
    return items


def group_at(text, start):
    """The text of the brace group opening at `start` (just past its `{`)."""
    depth = 1
    for j in range(start, len(text)):
        if text[j] == '{':
            depth += 1
        elif text[j] == '}':
            depth -= 1
            if depth == 0:
                return text[start:j]
    return ''


def references(path, text):
    """The absolute module paths the file of module `path` names (may end in an item)."""
    out = []
    for m in PATH.finditer(text):
        head, rest, brace = m.group(1), m.group(2), m.group(3)
        segs = tuple(s for s in rest.split('::') if s)
        base = ()
        if head == 'self':
            base = path
        elif head == 'super':
            base = path[:-1]
            # `super::super::x`
            while segs and segs[0] == 'super':
                base, segs = base[:-1], segs[1:]
        tails = [()]
        if brace:
            tails = group_items(group_at(text, m.end()))
        for tail in tails:
            out.append(base + segs + tail)
    return out


def graphs(mods):
    """For every folder (a module with children): its children and the edges between them."""
    folders = {}
    for path in mods:
        if path:
            folders.setdefault(path[:-1], set()).add(path[-1])
    edges = {folder: {} for folder in folders}
    for path, file in mods.items():
        for target in references(path, source(file)):
            # The deepest folder holding both ends; the edge joins its two children.
            common = 0
            while common < min(len(path), len(target)) and path[common] == target[common]:
                common += 1
            folder = path[:common]
            if folder not in folders or common >= len(path) or common >= len(target):
                continue
            a, b = path[common], target[common]
            if b not in folders[folder] or a == b:
                continue
            edges[folder].setdefault(a, set()).add(b)
    return folders, edges


def cycles_and_back_edges(mods, edges):
    index, low, stack, on, sccs, back = {}, {}, [], set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                back.append((v, w))
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    return [c for c in sccs if len(c) > 1], back


def layers(mods, edges):
    """Layer 0 imports nothing; every other module sits one above the highest it imports."""
    level = {}

    def lv(m, seen=()):
        if m in level:
            return level[m]
        if m in seen:
            return 0  # a cycle: reported separately
        deps = [lv(d, seen + (m,)) for d in edges.get(m, ())]
        level[m] = 1 + max(deps) if deps else 0
        return level[m]

    for m in mods:
        lv(m)
    by = {}
    for m, n in level.items():
        by.setdefault(n, []).append(m)
    return by


def report(root):
    """Prints one crate's graph; returns its cycles as (folder, members) pairs."""
    mods = modules(root)
    folders, edges = graphs(mods)
    top = folders.get((), set())
    top_edges = edges.get((), {})
    cycles, back = cycles_and_back_edges(top, top_edges)
    print(f"crate {root}: modules: {len(mods) - 1}, top-level modules: {len(top)}, "
          f"top-level edges: {sum(len(v) for v in top_edges.values())}")
    print("cycles:", cycles if cycles else "none")
    print("back-edges:", ', '.join(f"{a} -> {b}" for a, b in back) if back else "none")
    found = [((), c) for c in cycles]
    inner = []
    for folder in sorted(f for f in folders if f):
        c, b = cycles_and_back_edges(folders[folder], edges[folder])
        name = '::'.join(folder)
        inner.extend(f"{name}: {cycle}" for cycle in c)
        found.extend((folder, cycle) for cycle in c)
    print("cycles inside folders:", '; '.join(inner) if inner else "none")
    print("layers (each module imports only from layers below it):")
    for n, ms in sorted(layers(top, top_edges).items()):
        print(f"  {n}: {', '.join(sorted(ms))}")
    print("edges:")
    for m in sorted(top):
        print(f"  {m} -> {', '.join(sorted(top_edges.get(m, ())))}")
    for folder in sorted(f for f in folders if f and any(edges[f].values())):
        name = '::'.join(folder)
        for m in sorted(folders[folder]):
            if edges[folder].get(m):
                print(f"  {name}::{m} -> {', '.join(sorted(edges[folder][m]))}")
    return found


def main():
    roots = [a for a in sys.argv[1:] if not a.startswith('--')] or ['src/lib.rs']
    roots = [os.path.join(r, 'lib.rs') if os.path.isdir(r) else r for r in roots]
    found = []
    for root in roots:
        found.extend(report(root))
    if '--check' in sys.argv and found:
        sys.exit(1)


main()
