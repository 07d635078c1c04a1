#!/usr/bin/env python3
"""The import graph of the crate's top-level modules (src/<module>.rs and src/<module>/):
which module names which (`crate::x` paths and `use crate::{x, ...}` groups), its cycles, the
depth-first back-edges, and the layers (each module above everything it imports).

Comments, `#[cfg(test)]` modules (inline or in their own file) and `#[cfg(test)] use` lines
are ignored: they are not part of the built crate's structure. `super::` and `self::` paths
stay inside one top-level module. src/lib.rs and the binary (main.rs, args.rs) are left out.

usage: modgraph.py [SRC_DIR] [--check]   (--check: exit 1 if there is any cycle)
"""
import os
import re
import sys

args = [a for a in sys.argv[1:] if not a.startswith('--')]
check = '--check' in sys.argv
root = args[0] if args else 'src'
SKIP = {'lib', 'main', 'args'}

TEST_MOD_FILE = re.compile(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;')
TEST_MOD_INLINE = re.compile(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{')
TEST_USE = re.compile(r'#\[cfg\(test\)\]\s*use\s[^;]*;')


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


def group_heads(group):
    """The first path segment of each item in a `use crate::{...}` group (depth 0 only)."""
    heads, depth, item = [], 0, ''
    for c in group + ',':
        if c == '{':
            depth += 1
        elif c == '}':
            depth -= 1
        if depth == 0 and c == ',':
            name = re.match(r'\s*(\w+)', item)
            if name:
                heads.append(name.group(1))
            item = ''
        else:
            item += c
    return heads


def top_module(path):
    first = os.path.relpath(path, root).split(os.sep)[0]
    return first[:-3] if first.endswith('.rs') else first


def test_only_files():
    """Files that are `#[cfg(test)] mod x;` of the module file that declares them."""
    skipped = set()
    for dp, _, fs in os.walk(root):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(dp, f)
            text = open(p, encoding='utf-8').read()
            # `mod x;` in a/mod.rs or in a.rs (next to a/) names a/x.rs or a/x/mod.rs.
            here = dp if f in ('mod.rs', 'lib.rs', 'main.rs') else os.path.join(dp, f[:-3])
            for name in TEST_MOD_FILE.findall(text):
                skipped.add(os.path.join(here, name + '.rs'))
                skipped.add(os.path.join(here, name, 'mod.rs'))
    return skipped


def graph():
    mods = set()
    edges = {}
    skipped = test_only_files()
    for dp, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(dp, f)
            if not f.endswith('.rs') or p in skipped:
                continue
            m = top_module(p)
            if m in SKIP:
                continue
            mods.add(m)
            text = strip_comments(open(p, encoding='utf-8').read())
            text = TEST_USE.sub('', drop_inline_test_modules(text))
            named = set(re.findall(r'\bcrate::(\w+)', text))
            for group in re.findall(r'\bcrate::\{(.*?)\};', text, re.S):
                named.update(group_heads(group))
            edges.setdefault(m, set()).update(n for n in named if n != m)
    return mods, {m: {t for t in ts if t in mods} for m, ts in edges.items()}


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


def main():
    mods, edges = graph()
    cycles, back = cycles_and_back_edges(mods, edges)
    print(f"modules: {len(mods)}, edges: {sum(len(v) for v in edges.values())}")
    print("cycles:", cycles if cycles else "none")
    print("back-edges:", ', '.join(f"{a} -> {b}" for a, b in back) if back else "none")
    print("layers (each module imports only from layers below it):")
    for n, ms in sorted(layers(mods, edges).items()):
        print(f"  {n}: {', '.join(sorted(ms))}")
    print("edges:")
    for m in sorted(mods):
        print(f"  {m} -> {', '.join(sorted(edges.get(m, ())))}")
    if check and cycles:
        sys.exit(1)


main()
